"""Score SDE checkpoints: load, check, restore, inspect, save (docs/maths.md §10).

The original format is ``torch.save({'optimizer': Adam.state_dict(), 'model': state_dict of the
DataParallel-wrapped network ('module.' prefix), 'ema': {'decay', 'num_updates', 'shadow_params'},
'step': int})``. fpdiff reads such files (only through ``fpdiff.safe_load``), restores the network
with strict key/shape checks — EMA weights for evaluation, optimiser state and step for
fine-tuning — and writes the same format atomically, so the original code can load ours.

A plain state-dict export (keys with or without 'module.') is accepted as format ``state_dict``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .files import atomic_path
from .models import ARCHITECTURES, EMA, build_network, meta_init
from .safe_load import (CheckpointError, CorruptCheckpointError, FileReport, NotACheckpointError,
                        UnsafeCheckpointError, safe_torch_load)

__all__ = [
    "CheckpointError", "NotACheckpointError", "CorruptCheckpointError", "UnsafeCheckpointError",
    "ArchitectureMismatchError", "Checkpoint", "SavedCheckpoint", "load_checkpoint",
    "check_layout", "restore", "inspect_checkpoint", "checkpoint_state", "save_checkpoint",
    "save_run_checkpoint", "snapshot_path", "meta_checkpoint_path", "layout_of",
    "preset_layout", "match_presets", "sha256_file", "strip_module_prefix", "convert",
    "exported_state_dict", "save_state_dict", "infer_configs", "network_for", "load_network",
]

PREFIX = "module."
MAX_LISTED = 8


class ArchitectureMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the network that was asked for."""
    code = "architecture_mismatch"


# ----------------------------------------------------------------------------------------------
# small helpers

def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def strip_module_prefix(sd: Mapping) -> "OrderedDict[str, torch.Tensor]":
    """Drop one leading 'module.' (DataParallel / DDP) from every key that has it."""
    return OrderedDict((k[len(PREFIX):] if k.startswith(PREFIX) else k, v) for k, v in sd.items())


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DataParallel / DistributedDataParallel wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _plain(v: Any) -> Any:
    """NumPy scalars -> Python numbers (recursively in lists/tuples/dicts)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    return v


Layout = List[Tuple[str, Tuple[int, ...], str]]


def layout_of(sd: Mapping) -> Layout:
    """[(key without 'module.', shape, dtype name)] in state-dict order."""
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in strip_module_prefix(sd).items()]


# ----------------------------------------------------------------------------------------------
# loading

@dataclass
class Checkpoint:
    path: Optional[str]
    format: str                                    # 'score_sde' | 'state_dict'
    model: "OrderedDict[str, torch.Tensor]"        # keys without 'module.'
    ema: Optional[dict] = None
    optimizer: Optional[dict] = None
    step: Optional[int] = None
    sha256: Optional[str] = None
    bytes: Optional[int] = None
    file: Optional[FileReport] = None
    extra_keys: List[str] = field(default_factory=list)

    @property
    def num_parameters(self) -> int:
        """Elements in the network's tensors, excluding buffers we know of (``sigmas``)."""
        return sum(v.numel() for k, v in self.model.items() if k != "sigmas")


def _is_tensor_map(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def _from_object(obj: Any, path: Optional[str]) -> Checkpoint:
    where = path or "the object"
    if isinstance(obj, Mapping) and "model" in obj:
        model = obj["model"]
        if not _is_tensor_map(model):
            raise NotACheckpointError(f"{where}: 'model' is not a state dict of tensors", path=path)
        ema = obj.get("ema")
        if ema is not None:
            if not (isinstance(ema, Mapping) and "shadow_params" in ema and
                    isinstance(ema["shadow_params"], (list, tuple)) and
                    all(torch.is_tensor(t) for t in ema["shadow_params"])):
                raise NotACheckpointError(
                    f"{where}: 'ema' is not an EMA state {{decay, num_updates, shadow_params}}",
                    path=path)
        opt = obj.get("optimizer")
        if opt is not None and not (isinstance(opt, Mapping) and "state" in opt and
                                    "param_groups" in opt):
            raise NotACheckpointError(f"{where}: 'optimizer' is not an optimiser state dict",
                                      path=path)
        step = obj.get("step")
        if torch.is_tensor(step):
            step = int(step.item())
        elif isinstance(step, (np.integer, float, np.floating)):
            step = int(step)
        extra = [k for k in obj if k not in ("model", "ema", "optimizer", "step")]
        return Checkpoint(path, "score_sde", strip_module_prefix(model),
                          dict(ema) if ema is not None else None,
                          opt, step, extra_keys=[str(k) for k in extra])
    if _is_tensor_map(obj):
        return Checkpoint(path, "state_dict", strip_module_prefix(obj))
    keys = list(obj.keys())[:10] if isinstance(obj, Mapping) else None
    raise NotACheckpointError(
        f"{where} is a PyTorch file but not a Score SDE checkpoint or state dict "
        f"(top-level {type(obj).__name__}{' with keys ' + repr(keys) if keys is not None else ''}; "
        "expected {'model', 'ema', 'optimizer', 'step'})", path=path)


def load_checkpoint(path: str, *, map_location: Any = "cpu", verify: bool = True,
                    digest: bool = True) -> Checkpoint:
    """Safely load a checkpoint file (original format or a plain state dict).

    Raises ``NotACheckpointError``, ``CorruptCheckpointError`` or ``UnsafeCheckpointError``.
    """
    path = os.fspath(path)
    if _is_safetensors(path):
        return _load_safetensors(path, digest=digest)
    obj, report = safe_torch_load(path, map_location=map_location, verify=verify)
    ck = _from_object(obj, path)
    ck.file = report
    ck.bytes = report.bytes
    if digest:
        ck.sha256 = sha256_file(path)
    return ck


def _is_safetensors(path: str) -> bool:
    """safetensors: 8-byte little-endian header length, then a JSON header starting with '{'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8


def _load_safetensors(path: str, *, digest: bool = True) -> Checkpoint:
    try:
        from safetensors import safe_open
    except ImportError as e:  # pragma: no cover - pinned in requirements.txt
        raise CheckpointError(f"{path} is a safetensors file but safetensors is not installed",
                              path=path) from e
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = OrderedDict((k, fh.get_tensor(k)) for k in fh.keys())
    except Exception as e:  # the library raises its own error types for bad headers
        raise CorruptCheckpointError(f"{path} is not a readable safetensors file: {e}",
                                     path=path) from None
    if "fpdiff" in meta:   # our exports keep their metadata as one JSON value (deterministic bytes)
        try:
            meta = {**meta, **{k: str(v) for k, v in json.loads(meta["fpdiff"]).items()}}
        except ValueError:
            pass
    if meta.get("key_order"):
        order = meta["key_order"].split(",")
        if sorted(order) == sorted(tensors):
            tensors = OrderedDict((k, tensors[k]) for k in order)
    ck = Checkpoint(path, "state_dict", strip_module_prefix(tensors))
    ck.bytes = os.path.getsize(path)
    ck.file = FileReport(path, "safetensors", ck.bytes)
    if meta.get("step", "").isdigit():
        ck.step = int(meta["step"])
    if digest:
        ck.sha256 = sha256_file(path)
    return ck


def from_state(obj: Mapping) -> Checkpoint:
    """Wrap an in-memory checkpoint dict (e.g. ``checkpoint_state(...)``)."""
    return _from_object(obj, None)


# ----------------------------------------------------------------------------------------------
# presets and layouts

_LAYOUT_CACHE: Dict[Tuple, Layout] = {}


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


def preset_layout(model_cfg: Any, data_cfg: Any) -> Layout:
    """The state-dict layout a config produces (built on the meta device; cached)."""
    key = (_freeze(asdict(model_cfg)), _freeze(asdict(data_cfg)))
    lay = _LAYOUT_CACHE.get(key)
    if lay is None:
        with meta_init():
            net = build_network(model_cfg, data_cfg)
        lay = layout_of(net.state_dict())
        _LAYOUT_CACHE[key] = lay
    return lay


def _first_conv_width(lay: Layout) -> Optional[int]:
    for _, shape, _ in lay:
        if len(shape) == 4:
            return int(shape[0])
    return None


def match_presets(lay: Layout) -> List[dict]:
    """Presets whose state-dict layout the given one has.

    Each match is ``{"preset": name, "overrides": {...}}``: empty overrides for an exact match;
    ``{"nf": k}`` when the key names match and the shapes do for that width (e.g. the nf=8 test
    fixtures).
    """
    names = [k for k, _, _ in lay]
    nf = _first_conv_width(lay)
    out: List[dict] = []
    for name, arch in ARCHITECTURES.items():
        ref = preset_layout(arch.model, arch.data)
        if ref == lay:
            out.append({"preset": name, "overrides": {}})
            continue
        if [k for k, _, _ in ref] == names and nf and nf != arch.model.nf:
            resized = arch.with_model(nf=nf)
            if preset_layout(resized.model, resized.data) == lay:
                out.append({"preset": name, "overrides": {"nf": nf}})
    return out


def _describe_matches(matches: List[dict]) -> str:
    if not matches:
        return "it matches none of the known presets (" + ", ".join(sorted(ARCHITECTURES)) + ")"
    parts = []
    for m in matches:
        ov = ", ".join(f"model.{k}={v}" for k, v in m["overrides"].items())
        parts.append(m["preset"] + (f" with {ov}" if ov else ""))
    return "its key layout matches preset(s): " + "; ".join(parts)


def _config_summary(model: nn.Module) -> str:
    m = unwrap(model)
    bits = [type(m).__name__]
    for attr in ("nf", "num_res_blocks", "embedding_type", "progressive_input", "resblock_type"):
        if hasattr(m, attr):
            bits.append(f"{attr}={getattr(m, attr)}")
    return " ".join(bits)


def check_layout(model: nn.Module, ck: Checkpoint) -> None:
    """Raise ``ArchitectureMismatchError`` unless every key and shape agrees, both ways."""
    expected = unwrap(model).state_dict()
    got = ck.model
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [(k, tuple(got[k].shape), tuple(v.shape)) for k, v in expected.items()
              if k in got and tuple(got[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    matches = match_presets(layout_of(got))

    def first(items: Sequence[str]) -> str:
        more = f" … (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
        return ", ".join(items[:MAX_LISTED]) + more

    lines = [f"{ck.path or 'checkpoint'} does not fit the requested network "
             f"({_config_summary(model)}):"]
    if missing:
        lines.append(f"  {len(missing)} missing key(s): {first(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s): {first(unexpected)}")
    if shapes:
        lines.append(f"  {len(shapes)} shape mismatch(es): " + first(
            [f"{k} file {list(a)} vs network {list(b)}" for k, a, b in shapes]))
    lines.append("  " + _describe_matches(matches))
    raise ArchitectureMismatchError(
        "\n".join(lines), path=ck.path, missing=missing[:MAX_LISTED],
        unexpected=unexpected[:MAX_LISTED],
        shape_mismatches=[[k, list(a), list(b)] for k, a, b in shapes[:MAX_LISTED]],
        counts={"missing": len(missing), "unexpected": len(unexpected),
                "shape_mismatches": len(shapes)},
        matching_presets=matches)


# ----------------------------------------------------------------------------------------------
# restoring

def _trainable(model: nn.Module) -> List[nn.Parameter]:
    return [p for p in unwrap(model).parameters() if p.requires_grad]


def _check_ema(model: nn.Module, ck: Checkpoint) -> None:
    if ck.ema is None:
        raise CheckpointError(f"{ck.path or 'checkpoint'} has no EMA weights "
                              "(use weights='model')", path=ck.path)
    params = _trainable(model)
    shadows = ck.ema["shadow_params"]
    names = [n for n, p in unwrap(model).named_parameters() if p.requires_grad]
    if len(shadows) != len(params):
        raise ArchitectureMismatchError(
            f"{ck.path or 'checkpoint'}: EMA holds {len(shadows)} shadow parameters but the network "
            f"has {len(params)} trainable parameters", path=ck.path)
    for i, (s, p) in enumerate(zip(shadows, params)):
        if tuple(s.shape) != tuple(p.shape):
            raise ArchitectureMismatchError(
                f"{ck.path or 'checkpoint'}: EMA shadow #{i} ({names[i]}) has shape "
                f"{list(s.shape)}, the parameter {list(p.shape)}", path=ck.path)


@torch.no_grad()
def copy_ema_to(model: nn.Module, ck: Checkpoint) -> None:
    """Overwrite the trainable parameters with the EMA shadows (non-trainable ones untouched)."""
    _check_ema(model, ck)
    for s, p in zip(ck.ema["shadow_params"], _trainable(model)):
        p.copy_(s)


def _check_optimizer(model: nn.Module, opt_state: Mapping, path: Optional[str]) -> None:
    params = list(unwrap(model).parameters())
    groups = opt_state.get("param_groups", [])
    n = sum(len(g.get("params", [])) for g in groups)
    if n != len(params):
        raise ArchitectureMismatchError(
            f"{path or 'checkpoint'}: optimiser state covers {n} parameters, the network has "
            f"{len(params)}", path=path)
    index = [i for g in groups for i in g["params"]]
    by_index = dict(zip(index, params))
    for i, st in opt_state.get("state", {}).items():
        p = by_index.get(i)
        if p is None:
            raise ArchitectureMismatchError(f"{path or 'checkpoint'}: optimiser state for unknown "
                                            f"parameter index {i}", path=path)
        for k in ("exp_avg", "exp_avg_sq"):
            t = st.get(k) if isinstance(st, Mapping) else None
            if torch.is_tensor(t) and tuple(t.shape) != tuple(p.shape):
                raise ArchitectureMismatchError(
                    f"{path or 'checkpoint'}: optimiser {k} for parameter {i} has shape "
                    f"{list(t.shape)}, the parameter {list(p.shape)}", path=path)


def optimizer_state_for_loading(opt_state: Mapping) -> dict:
    """Optimiser state with NumPy scalars (the original's warm-up ``lr``) made Python numbers."""
    return {"state": opt_state["state"], "param_groups": [_plain(dict(g)) for g in opt_state["param_groups"]]}


@dataclass
class RestoreInfo:
    weights: str
    step: Optional[int]
    ema_loaded: bool
    optimizer_loaded: bool


def restore(model: nn.Module, ck: Checkpoint, *, weights: str = "ema",
            optimizer: Optional[torch.optim.Optimizer] = None, ema: Any = None) -> RestoreInfo:
    """Put a checkpoint into ``model`` (strict) and optionally an optimiser and an EMA object.

    ``weights='ema'`` (evaluation) loads the raw weights, then overwrites the trainable parameters
    with the EMA shadows; ``'model'`` keeps the raw training weights. ``ema`` is any object with
    ``load_state_dict`` (``fpdiff.models.EMA``); ``optimizer`` a torch optimiser over
    ``model.parameters()`` in order (as the original builds it).
    """
    if weights not in ("ema", "model"):
        raise ValueError("weights must be 'ema' or 'model'")
    check_layout(model, ck)
    if weights == "ema" or ema is not None:
        _check_ema(model, ck)
    if optimizer is not None:
        if ck.optimizer is None:
            raise CheckpointError(f"{ck.path or 'checkpoint'} has no optimiser state", path=ck.path)
        _check_optimizer(model, ck.optimizer, ck.path)
    net = unwrap(model)
    net.load_state_dict(ck.model, strict=True)
    if weights == "ema":
        copy_ema_to(net, ck)
    if ema is not None:
        ema.load_state_dict({"decay": ck.ema["decay"], "num_updates": ck.ema["num_updates"],
                             "shadow_params": [s.detach().clone() for s in ck.ema["shadow_params"]]})
        if hasattr(ema, "to"):
            dev = next(net.parameters()).device
            ema.to(dev)
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state_for_loading(ck.optimizer))
    return RestoreInfo(weights, ck.step, ema is not None, optimizer is not None)


def load_network(path: str, model_cfg: Any, data_cfg: Any, *, weights: str = "ema",
                 map_location: Any = "cpu") -> Tuple[nn.Module, Checkpoint]:
    """Build the network for the configs, restore the file into it, set eval mode."""
    ck = load_checkpoint(path, map_location="cpu")
    net = build_network(model_cfg, data_cfg)
    restore(net, ck, weights=weights)
    net.eval()
    return net.to(map_location), ck


# ----------------------------------------------------------------------------------------------
# inspection

def _optimizer_summary(opt: Optional[Mapping]) -> Optional[dict]:
    if opt is None:
        return None
    groups = opt.get("param_groups", [])
    state = opt.get("state", {})
    entry_keys = sorted({k for st in state.values() if isinstance(st, Mapping) for k in st})
    kind = "Adam" if {"exp_avg", "exp_avg_sq"} <= set(entry_keys) else "unknown"
    g0 = groups[0] if groups else {}
    steps = [st.get("step") for st in state.values() if isinstance(st, Mapping) and "step" in st]
    step_type = None
    if steps:
        step_type = "tensor" if torch.is_tensor(steps[0]) else type(steps[0]).__name__
    return {
        "kind": kind,
        "param_groups": len(groups),
        "parameters": sum(len(g.get("params", [])) for g in groups),
        "state_entries": len(state),
        "lr": _plain(g0.get("lr")),
        "lr_type": type(g0.get("lr")).__module__ + "." + type(g0.get("lr")).__name__
        if "lr" in g0 else None,
        "betas": list(_plain(g0.get("betas"))) if g0.get("betas") is not None else None,
        "eps": _plain(g0.get("eps")),
        "weight_decay": _plain(g0.get("weight_decay")),
        "amsgrad": _plain(g0.get("amsgrad")),
        "adam_step_type": step_type,
    }


def inspect_checkpoint(path: str) -> dict:
    """JSON-ready summary: format, step, sizes, EMA, optimiser, matching presets, digest."""
    ck = load_checkpoint(path)
    lay = layout_of(ck.model)
    dtypes: Dict[str, int] = {}
    for _, _, dt in lay:
        dtypes[dt] = dtypes.get(dt, 0) + 1
    ema = None
    if ck.ema is not None:
        ema = {"decay": _plain(ck.ema.get("decay")), "num_updates": _plain(ck.ema.get("num_updates")),
               "shadow_params": len(ck.ema["shadow_params"]),
               "shadow_elements": int(sum(t.numel() for t in ck.ema["shadow_params"]))}
    return {
        "path": os.path.abspath(path),
        "bytes": ck.bytes,
        "sha256": ck.sha256,
        "container": ck.file.format if ck.file else None,
        "format": ck.format,
        "step": ck.step,
        "tensors": len(lay),
        "parameter_count": ck.num_parameters,
        "dtypes": dtypes,
        "buffers": [k for k, _, _ in lay if k == "sigmas"],
        "ema": ema,
        "optimizer": _optimizer_summary(ck.optimizer),
        "extra_keys": ck.extra_keys,
        "matching_presets": match_presets(lay),
        "globals": ck.file.globals if ck.file else [],
    }


# ----------------------------------------------------------------------------------------------
# saving

@dataclass
class SavedCheckpoint:
    path: str
    step: Optional[int]
    sha256: str
    bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu(t: Any) -> Any:
    if torch.is_tensor(t):
        return t.detach().cpu()
    if isinstance(t, dict):
        return type(t)((k, _cpu(v)) for k, v in t.items()) if isinstance(t, OrderedDict) else \
            {k: _cpu(v) for k, v in t.items()}
    if isinstance(t, list):
        return [_cpu(v) for v in t]
    if isinstance(t, tuple):
        return tuple(_cpu(v) for v in t)
    return t


def checkpoint_state(model: nn.Module, optimizer: Any = None, ema: Any = None,
                     step: int = 0, *, ema_decay: float = 0.9999) -> dict:
    """The original's checkpoint dict: 'module.'-prefixed weights, EMA, Adam state, step.

    Without ``ema`` the shadows are the current weights (decay ``ema_decay``, 0 updates); without
    ``optimizer`` the state of a fresh Adam (Score SDE's settings) over ``model.parameters()`` —
    both what the original needs to resume from the file.
    """
    net = unwrap(model)
    sd = OrderedDict((PREFIX + k, v.detach().cpu()) for k, v in net.state_dict().items())
    if ema is None:
        ema_state = {"decay": float(ema_decay), "num_updates": 0,
                     "shadow_params": [p.detach().cpu().clone() for p in _trainable(net)]}
    else:
        raw = ema.state_dict() if hasattr(ema, "state_dict") else dict(ema)
        ema_state = {"decay": _plain(raw["decay"]), "num_updates": _plain(raw["num_updates"]),
                     "shadow_params": [s.detach().cpu() for s in raw["shadow_params"]]}
    if optimizer is None:
        raw = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8,
                               weight_decay=0).state_dict()
    else:
        raw = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    opt_state = {"state": _cpu(raw["state"]),
                 "param_groups": [_plain(dict(g)) for g in raw["param_groups"]]}
    return {"optimizer": opt_state, "model": sd, "ema": ema_state, "step": int(step)}


def save_checkpoint(path: str, state: Mapping) -> SavedCheckpoint:
    """Write ``state`` (see ``checkpoint_state``) atomically: temp file, fsync, rename.

    A crash or kill at any point leaves either the previous file or the complete new one.
    """
    path = os.path.abspath(os.fspath(path))
    # through a file object: given a path, torch.save names the archive's root after the
    # (random) temporary file, and identical states would no longer give identical bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(dict(state), fh)
    digest, size = sha256_file(path), os.path.getsize(path)
    step = state.get("step")
    return SavedCheckpoint(path, int(step) if step is not None else None, digest, size)


def snapshot_path(workdir: str, k: int) -> str:
    """``<workdir>/checkpoints/checkpoint_<k>.pth`` (k = step // snapshot_freq in the original)."""
    return os.path.join(workdir, "checkpoints", f"checkpoint_{int(k)}.pth")


def meta_checkpoint_path(workdir: str) -> str:
    """``<workdir>/checkpoints-meta/checkpoint.pth``, the file the original resumes from."""
    return os.path.join(workdir, "checkpoints-meta", "checkpoint.pth")


def save_run_checkpoint(workdir: str, state: Mapping, *, k: Optional[int] = None,
                        meta: bool = False) -> SavedCheckpoint:
    """Save into a run directory with the original layout (snapshot ``k`` or the meta file)."""
    if meta == (k is not None):
        raise ValueError("give exactly one of k (snapshot index) or meta=True")
    return save_checkpoint(meta_checkpoint_path(workdir) if meta else snapshot_path(workdir, k), state)


# ----------------------------------------------------------------------------------------------
# conversion between the original format and plain state-dict exports

def infer_configs(ck: Checkpoint) -> Tuple[Any, Any, str]:
    """(model_cfg, data_cfg, preset name) of the first preset whose layout the file has."""
    matches = match_presets(layout_of(ck.model))
    if not matches:
        raise ArchitectureMismatchError(
            f"{ck.path or 'checkpoint'}: cannot tell which network this is — "
            + _describe_matches(matches) + "; pass the experiment (model and data config)",
            path=ck.path)
    m = matches[0]
    arch = ARCHITECTURES[m["preset"]].with_model(**m["overrides"])
    return arch.model, arch.data, m["preset"]


def network_for(ck: Checkpoint, model_cfg: Any = None, data_cfg: Any = None) -> nn.Module:
    """A freshly built network for ``ck`` (from the given configs, else the matching preset)."""
    if model_cfg is None:
        model_cfg, data_cfg, _ = infer_configs(ck)
    return build_network(model_cfg, data_cfg)


def exported_state_dict(ck: Checkpoint, *, weights: str = "ema", model_cfg: Any = None,
                        data_cfg: Any = None) -> "OrderedDict[str, torch.Tensor]":
    """The network's state dict (no 'module.' prefix) with the raw or the EMA weights."""
    net = network_for(ck, model_cfg, data_cfg)
    restore(net, ck, weights=weights)
    return OrderedDict((k, v.detach().cpu().contiguous()) for k, v in net.state_dict().items())


def save_state_dict(path: str, sd: Mapping, *, fmt: str = "safetensors",
                    metadata: Optional[Mapping[str, str]] = None) -> SavedCheckpoint:
    """Write a plain state dict atomically as safetensors or a torch.save file."""
    if fmt not in ("safetensors", "state_dict"):
        raise ValueError("fmt must be 'safetensors' or 'state_dict'")
    path = os.path.abspath(os.fspath(path))
    tensors = OrderedDict((k, v.detach().cpu().contiguous().clone()) for k, v in sd.items())
    with atomic_path(path) as tmp:
        if fmt == "safetensors":
            from safetensors.torch import save_file
            meta = {"key_order": ",".join(tensors)}
            meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
            # one metadata entry: safetensors writes its metadata map in hash order, so several
            # entries would make the bytes (and sha256) of identical exports differ
            save_file(tensors, tmp, metadata={"fpdiff": json.dumps(meta, sort_keys=True)})
        else:
            with open(tmp, "wb") as fh:  # a file object keeps the bytes independent of tmp's name
                torch.save(tensors, fh)
    digest, size = sha256_file(path), os.path.getsize(path)
    step = (metadata or {}).get("step")
    return SavedCheckpoint(path, int(step) if str(step).isdigit() else None, digest, size)


def convert(src: str, dst: str, *, to: str, weights: str = "ema", model_cfg: Any = None,
            data_cfg: Any = None, step: Optional[int] = None) -> SavedCheckpoint:
    """Convert between the original format and plain exports.

    ``to='safetensors' | 'state_dict'``: the network's weights (EMA by default) as a flat state
    dict. ``to='score_sde'``: the original training format (weights as given; EMA shadows = the
    weights, a fresh Adam state), loadable by Score SDE's ``restore_checkpoint``.
    """
    ck = load_checkpoint(src)
    if to in ("safetensors", "state_dict"):
        if ck.format == "state_dict":
            weights = "model"
        sd = exported_state_dict(ck, weights=weights, model_cfg=model_cfg, data_cfg=data_cfg)
        meta = {"source_sha256": ck.sha256 or "", "weights": weights}
        if ck.step is not None or step is not None:
            meta["step"] = str(step if step is not None else ck.step)
        return save_state_dict(dst, sd, fmt=to, metadata=meta)
    if to == "score_sde":
        if model_cfg is None:
            model_cfg, data_cfg, _ = infer_configs(ck)
        net = build_network(model_cfg, data_cfg)
        if ck.format == "score_sde":
            # already the format: re-save what it holds (raw weights, EMA, optimiser, step)
            ema = EMA(net.parameters(), decay=float(ck.ema["decay"])) if ck.ema is not None else None
            opt = torch.optim.Adam(net.parameters(), lr=2e-4) if ck.optimizer is not None else None
            restore(net, ck, weights="model", ema=ema, optimizer=opt)
            return save_checkpoint(dst, checkpoint_state(net, opt, ema, ck.step or 0))
        restore(net, ck, weights="model")
        decay = float(model_cfg.ema_rate)
        return save_checkpoint(dst, checkpoint_state(
            net, None, None, step if step is not None else (ck.step or 0), ema_decay=decay))
    raise ValueError("to must be 'safetensors', 'state_dict' or 'score_sde'")

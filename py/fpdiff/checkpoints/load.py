"""Load any checkpoint fpdiff accepts into one :class:`Checkpoint`, format told from the content.

* ``score_sde`` — the PyTorch Score SDE format, ``torch.save({'optimizer', 'model' ('module.'
  keys), 'ema': {'decay', 'num_updates', 'shadow_params'}, 'step'})``, zip or legacy;
* ``state_dict`` — a plain state dict (``torch.save`` or safetensors, keys with or without
  'module.');
* ``flax`` — a score_flow / score_sde (JAX) / mle_score_ode training state (msgpack). Its trees
  are kept under flax names (``model`` = ``optimizer.target``, ``ema['params']`` =
  ``params_ema``, ``optimizer`` = the Adam moments) until :func:`fpdiff.checkpoints.restore` maps
  them onto a network, which fixes the call order the names refer to.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch

from .errors import CheckpointError, CorruptCheckpointError, NotACheckpointError
from .flax_file import parse_flax_state, read_flax
from .source import open_regular, resolve_path, sha256_file, sniff
from .torch_file import FileReport, safe_torch_load
from .validate import check_fraction, check_step

__all__ = ["Checkpoint", "load_checkpoint", "from_state", "strip_module_prefix", "PREFIX", "plain_numbers",
           "FORMATS"]

PREFIX = "module."
FORMATS = ("score_sde", "state_dict", "flax")


@dataclass
class Checkpoint:
    path: Optional[str]
    format: str                                    # one of FORMATS
    model: "OrderedDict[str, torch.Tensor]"        # torch keys without 'module.' (flax: flax paths)
    ema: Optional[dict] = None                     # {decay, num_updates, shadow_params} (flax: params)
    optimizer: Optional[dict] = None               # torch state dict (flax: step, lr, moments)
    step: Optional[int] = None
    sha256: Optional[str] = None
    bytes: Optional[int] = None
    file: Optional[FileReport] = None
    extra_keys: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    origin: Optional[str] = None                   # 'flax' once a flax state is mapped onto a network

    @property
    def num_parameters(self) -> int:
        """Elements in the network's tensors, excluding buffers we know of (``sigmas``)."""
        return sum(v.numel() for k, v in self.model.items() if k != "sigmas")


def strip_module_prefix(sd: Mapping) -> "OrderedDict[str, torch.Tensor]":
    """Drop one leading 'module.' (DataParallel / DDP) from every key that has it."""
    return OrderedDict((k[len(PREFIX):] if k.startswith(PREFIX) else k, v) for k, v in sd.items())


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
            ema = dict(ema)
            ema["decay"] = check_fraction(ema.get("decay"), path, "ema.decay")
            if ema.get("num_updates") is not None:
                ema["num_updates"] = check_step(ema["num_updates"], path, "ema.num_updates")
        opt = obj.get("optimizer")
        if opt is not None and not (isinstance(opt, Mapping) and "state" in opt and
                                    "param_groups" in opt):
            raise NotACheckpointError(f"{where}: 'optimizer' is not an optimiser state dict",
                                      path=path)
        step = obj.get("step")
        if step is not None:
            step = check_step(step, path, "step")
        extra = [k for k in obj if k not in ("model", "ema", "optimizer", "step")]
        return Checkpoint(path, "score_sde", strip_module_prefix(model), ema, opt, step,
                          extra_keys=[str(k) for k in extra])
    if _is_tensor_map(obj):
        return Checkpoint(path, "state_dict", strip_module_prefix(obj))
    keys = list(obj.keys())[:10] if isinstance(obj, Mapping) else None
    raise NotACheckpointError(
        f"{where} is a PyTorch file but not a Score SDE checkpoint or state dict "
        f"(top-level {type(obj).__name__}{' with keys ' + repr(keys) if keys is not None else ''}; "
        "expected {'model', 'ema', 'optimizer', 'step'})", path=path)


def from_state(obj: Mapping) -> Checkpoint:
    """Wrap an in-memory checkpoint dict (e.g. ``checkpoint_state(...)``)."""
    return _from_object(obj, None)


def load_checkpoint(path: str, *, map_location: Any = "cpu", verify: bool = True,
                    digest: bool = True) -> Checkpoint:
    """Safely load a checkpoint file, or a work directory's newest ``checkpoints/checkpoint_<N>``.

    Raises ``NotACheckpointError``, ``CorruptCheckpointError`` or ``UnsafeCheckpointError`` (and
    ``FileNotFoundError`` for a missing path). Nothing in the file is executed.
    """
    path = resolve_path(os.fspath(path))
    with open_regular(path) as fh:
        head = fh.read(16)
        size = os.fstat(fh.fileno()).st_size
        kind = sniff(head)
        if size == 0:
            raise NotACheckpointError(f"{path} is empty", path=path)
        if kind == "flax":
            fh.seek(0)
            ck = _load_flax(fh, path, size)
        elif kind == "safetensors":
            ck = _load_safetensors(path, size)
        elif kind is None:
            raise NotACheckpointError(
                f"{path} is not a checkpoint (unrecognised header {head[:4]!r}; expected a torch.save "
                "zip archive or legacy pickle, a safetensors file or a flax msgpack state)", path=path)
        else:
            ck = None
    if ck is None:
        obj, report = safe_torch_load(path, map_location=map_location, verify=verify)
        ck = _from_object(obj, path)
        ck.file = report
        ck.bytes = report.bytes
    if digest:
        ck.sha256 = sha256_file(path)
    return ck


def _load_flax(fh: Any, path: str, size: int) -> Checkpoint:
    st = parse_flax_state(read_flax(fh, path, size), path)
    ema = {"decay": st.ema_rate, "num_updates": None, "params": st.params_ema}
    opt = {"kind": "flax.optim.Adam", "step": st.adam_step, "lr": st.lr,
           "grad_ema": st.grad_ema, "grad_sq_ema": st.grad_sq_ema}
    ck = Checkpoint(path, "flax", st.params, ema, opt, st.step, bytes=size,
                    file=FileReport(path, "msgpack", size, [], len(st.params)))
    return ck


def _load_safetensors(path: str, size: int) -> Checkpoint:
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
    ck.bytes = size
    ck.file = FileReport(path, "safetensors", size)
    if meta.get("step") is not None:
        ck.step = check_step(int(meta["step"]) if meta["step"].isdigit() else meta["step"], path,
                             "step (safetensors metadata)")
    return ck


def plain_numbers(v: Any) -> Any:
    """NumPy scalars → Python numbers, recursively through lists, tuples and dicts."""
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {k: plain_numbers(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(plain_numbers(x) for x in v)
    return v

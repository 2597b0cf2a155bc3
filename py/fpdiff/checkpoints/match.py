"""Which network a checkpoint holds: its layout against the known presets, and strict checks.

A *layout* is ``[(key without 'module.', shape, dtype)]`` in state-dict order. The known networks
(``fpdiff.models.ARCHITECTURES``: Score SDE's CIFAR-10 configs, whose networks are also
score_flow's and mle_score_ode's) are built on the meta device — milliseconds, no memory — and compared; a file of
the same names but another width matches "with model.nf=k". A flax file is compared in its own
names, through each preset's flax map (``flax_map``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, is_dataclass, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch.nn as nn

from ..models import ARCHITECTURES, build_network, meta_init
from .errors import ArchitectureMismatchError
from .flax_map import flax_layout
from .load import Checkpoint, strip_module_prefix

__all__ = ["Layout", "layout_of", "preset_layout", "preset_flax_layout", "match_presets",
           "match_flax_presets", "describe_matches", "check_layout", "mismatch_error", "unwrap",
           "known_architectures", "with_nf", "MAX_LISTED"]

MAX_LISTED = 8
Layout = List[Tuple[str, Tuple[int, ...], str]]


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DataParallel / DistributedDataParallel wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def layout_of(sd: Mapping) -> Layout:
    """[(key without 'module.', shape, dtype name)] in state-dict order."""
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in strip_module_prefix(sd).items()]


# ----------------------------------------------------------------------------------------------
# the known networks

def known_architectures() -> Iterator[Tuple[str, Any, Any]]:
    """(name, model config, data config) of every network a checkpoint is matched against
    (``fpdiff.models.ARCHITECTURES``: Score SDE's configs, also score_flow's networks)."""
    for name, arch in ARCHITECTURES.items():
        yield name, arch.model, arch.data


def _get(cfg: Any, key: str) -> Any:
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


def with_nf(model_cfg: Any, nf: int) -> Any:
    """The model config with another base width."""
    return dict(model_cfg, nf=nf) if isinstance(model_cfg, Mapping) else replace(model_cfg, nf=nf)


def _freeze(v: Any) -> Any:
    if is_dataclass(v) and not isinstance(v, type):
        v = asdict(v)
    if isinstance(v, Mapping):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


_CACHE: Dict[Tuple, Any] = {}


def _cached(kind: str, model_cfg: Any, data_cfg: Any, make: Callable[[nn.Module], Any]) -> Any:
    key = (kind, _freeze(model_cfg), _freeze(data_cfg))
    if key not in _CACHE:
        with meta_init():
            net = build_network(model_cfg, data_cfg)
        _CACHE[key] = make(net)
    return _CACHE[key]


def preset_layout(model_cfg: Any, data_cfg: Any) -> Layout:
    """The state-dict layout a config produces (built on the meta device; cached)."""
    return _cached("torch", model_cfg, data_cfg, lambda net: layout_of(net.state_dict()))


def preset_flax_layout(model_cfg: Any, data_cfg: Any) -> Dict[str, Tuple[int, ...]]:
    """flax path → shape of the parameters a config produces (cached)."""
    return _cached("flax", model_cfg, data_cfg, flax_layout)


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
    for name, model_cfg, data_cfg in known_architectures():
        ref = preset_layout(model_cfg, data_cfg)
        if ref == lay:
            out.append({"preset": name, "overrides": {}})
        elif [k for k, _, _ in ref] == names and nf and nf != _get(model_cfg, "nf") and \
                preset_layout(with_nf(model_cfg, nf), data_cfg) == lay:
            out.append({"preset": name, "overrides": {"nf": nf}})
    return out


def match_flax_presets(layout: Mapping[str, Tuple[int, ...]]) -> List[dict]:
    """Presets whose flax parameters (paths and shapes) are exactly those of ``layout``."""
    conv0 = layout.get("Conv_0/kernel")
    nf = int(conv0[-1]) if conv0 is not None and len(conv0) == 4 else None
    out: List[dict] = []
    for name, model_cfg, data_cfg in known_architectures():
        if _get(model_cfg, "kind") not in ("ncsnpp", "ddpmpp"):
            continue
        ref = preset_flax_layout(model_cfg, data_cfg)
        if set(ref) != set(layout):
            continue
        if all(tuple(ref[k]) == tuple(layout[k]) for k in ref):
            out.append({"preset": name, "overrides": {}})
        elif nf and nf != _get(model_cfg, "nf"):
            resized = preset_flax_layout(with_nf(model_cfg, nf), data_cfg)
            if all(tuple(resized[k]) == tuple(layout[k]) for k in resized):
                out.append({"preset": name, "overrides": {"nf": nf}})
    return out


def describe_matches(matches: List[dict]) -> str:
    if not matches:
        return "it matches none of the known presets (" + \
            ", ".join(sorted(n for n, _, _ in known_architectures())) + ")"
    parts = []
    for m in matches:
        ov = ", ".join(f"model.{k}={v}" for k, v in m["overrides"].items())
        parts.append(m["preset"] + (f" with {ov}" if ov else ""))
    return "its layout matches preset(s): " + "; ".join(parts)


def _config_summary(model: nn.Module) -> str:
    m = unwrap(model)
    bits = [type(m).__name__]
    for attr in ("nf", "num_res_blocks", "embedding_type", "progressive_input", "resblock_type"):
        if hasattr(m, attr):
            bits.append(f"{attr}={getattr(m, attr)}")
    return " ".join(bits)


def _first(items: Sequence[str]) -> str:
    more = f" … (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def mismatch_error(model: nn.Module, path: Optional[str], missing: List[str],
                   unexpected: List[str], shapes: List[Tuple[str, tuple, tuple]],
                   matches: List[dict], what: str = "key") -> ArchitectureMismatchError:
    """One error naming the first missing / unexpected entries, shape mismatches and matches."""
    lines = [f"{path or 'checkpoint'} does not fit the requested network "
             f"({_config_summary(model)}):"]
    if missing:
        lines.append(f"  {len(missing)} missing {what}(s): {_first(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected {what}(s): {_first(unexpected)}")
    if shapes:
        lines.append(f"  {len(shapes)} shape mismatch(es): " + _first(
            [f"{k} file {list(a)} vs network {list(b)}" for k, a, b in shapes]))
    lines.append("  " + describe_matches(matches))
    return ArchitectureMismatchError(
        "\n".join(lines), path=path, missing=missing[:MAX_LISTED],
        unexpected=unexpected[:MAX_LISTED],
        shape_mismatches=[[k, list(a), list(b)] for k, a, b in shapes[:MAX_LISTED]],
        counts={"missing": len(missing), "unexpected": len(unexpected),
                "shape_mismatches": len(shapes)},
        matching_presets=matches)


def check_layout(model: nn.Module, ck: Checkpoint) -> None:
    """Raise ``ArchitectureMismatchError`` unless every key and shape agrees, both ways."""
    expected = unwrap(model).state_dict()
    got = ck.model
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [(k, tuple(got[k].shape), tuple(v.shape)) for k, v in expected.items()
              if k in got and tuple(got[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise mismatch_error(model, ck.path, missing, unexpected, shapes,
                             match_presets(layout_of(got)))

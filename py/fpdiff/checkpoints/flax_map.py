"""flax NCSN++ / DDPM++ names ↔ fpdiff's (= score_sde_pytorch's) state-dict keys, for any config
(docs/maths.md §10.1).

flax names each submodule ``<Class>_<k>``, ``k`` counting the modules of that class its parent
*created*, in the order its ``__call__`` created them (every call of ``Downsample(...)(h)`` is a
new module, parameters or not). score_sde_pytorch keeps the top-level modules in
``all_modules.<i>`` in the order its forward uses them and gives inner modules the flax names.
So the map follows from one forward pass of the network (on the meta device: no arithmetic)
with a hook on each top-level module, counting calls per flax class — including the modules
outside ``all_modules`` that flax also counts (the parameter-free pyramid resamplers).

Leaves (flax → torch): ``Conv*/kernel`` [kh, kw, in, out] → ``weight`` [out, in, kh, kw];
``Dense*/kernel`` [in, out] → ``weight`` [out, in]; the FIR ``Conv2d_0/weight`` [kh, kw, in,
out] → ``weight`` [out, in, kh, kw] (no flip: both codes flip inside the up-sampling op);
``GroupNorm*/scale`` → ``weight``; ``bias``, NIN ``W`` / ``b`` and the Fourier ``W`` unchanged.
The ``sigmas`` buffer has no flax counterpart: it is computed from the config.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .errors import ArchitectureMismatchError

__all__ = ["FlaxLeaf", "flax_names", "flax_layout", "to_torch_tensor", "COMPUTED_BUFFERS"]

#: torch state entries a flax file never holds (recomputed from the config)
COMPUTED_BUFFERS = ("sigmas",)
#: fpdiff / torch module class → flax module class (by name, through the MRO)
_FLAX_CLASS = {
    "Linear": "Dense", "Conv2d": "Conv", "GroupNorm": "GroupNorm",
    "GaussianFourierProjection": "GaussianFourierProjection", "AttnBlockpp": "AttnBlockpp",
    "ResnetBlockBigGANpp": "ResnetBlockBigGANpp", "ResnetBlockDDPMpp": "ResnetBlockDDPMpp",
    "Upsample": "Upsample", "Downsample": "Downsample", "Combine": "Combine",
}


@dataclass(frozen=True)
class FlaxLeaf:
    path: str                 # "ResnetBlockBigGANpp_10/Conv_0/kernel"
    transform: str            # "conv" | "dense" | "none"
    shape: Tuple[int, ...]    # the flax shape


def _flax_class(m: nn.Module) -> Optional[str]:
    for cls in type(m).__mro__:
        if cls.__name__ in _FLAX_CLASS:
            return _FLAX_CLASS[cls.__name__]
    return None


def _is_meta(net: nn.Module) -> bool:
    return all(t.device.type == "meta" for t in list(net.parameters()) + list(net.buffers()))


def _meta_twin(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose tensors live on the meta device (no data is copied)."""
    if _is_meta(net):
        return net
    memo = {}
    for t in list(net.parameters()) + list(net.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(net, memo)


def _input_shape(net: nn.Module) -> Tuple[int, int]:
    """(channels, image size) of an NCSN++: the first convolution's input, the first resolution."""
    res = getattr(net, "all_resolutions", None)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not res or not convs:
        raise ArchitectureMismatchError(
            f"flax checkpoints hold NCSN++ / DDPM++ networks; {type(net).__name__} is not one")
    return int(convs[0].in_channels), int(res[0])


def _call_order(net: nn.Module) -> List[Tuple[Optional[int], nn.Module]]:
    """Top-level modules in the order one forward pass calls them (a module once per call)."""
    twin = _meta_twin(net)
    tops = list(getattr(twin, "all_modules", []))
    if not tops:
        raise ArchitectureMismatchError(
            f"flax checkpoints hold NCSN++ / DDPM++ networks; {type(net).__name__} is not one")
    others = [m for name, m in twin.named_children() if name != "all_modules" and _flax_class(m)]
    calls: List[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: calls.append(mod)) for m in tops + others]
    channels, size = _input_shape(twin)
    was_training = twin.training
    try:
        twin.eval()
        with torch.no_grad():
            twin(torch.zeros(1, channels, size, size, device="meta"), torch.ones(1, device="meta"))
    finally:
        for h in hooks:
            h.remove()
        twin.train(was_training)
    index = {id(m): i for i, m in enumerate(tops)}
    return [(index.get(id(m)), m) for m in calls]


def flax_names(net: nn.Module) -> "OrderedDict[str, FlaxLeaf]":
    """torch state-dict key → its flax leaf, for every entry except the computed buffers."""
    counts: Dict[str, int] = {}
    top_name: Dict[int, str] = {}
    for i, m in _call_order(net):
        cls = _flax_class(m)
        if cls is None:
            if any(True for _ in m.parameters()):
                raise ArchitectureMismatchError(f"no flax counterpart for top-level module "
                                                f"{type(m).__name__}")
            continue
        name = f"{cls}_{counts.get(cls, 0)}"
        counts[cls] = counts.get(cls, 0) + 1
        if i is not None:
            if i in top_name and any(True for _ in m.parameters()):
                raise ArchitectureMismatchError(f"all_modules.{i} is called twice; its flax name is "
                                                "ambiguous")
            top_name.setdefault(i, name)
    out: "OrderedDict[str, FlaxLeaf]" = OrderedDict()
    modules = dict(net.named_modules())
    for key, t in net.state_dict().items():
        if key in COMPUTED_BUFFERS:
            continue
        parts = key.split(".")
        if parts[0] != "all_modules" or len(parts) < 3 or not parts[1].isdigit():
            raise ArchitectureMismatchError(f"state entry {key} lies outside all_modules; no flax "
                                            "counterpart")
        i = int(parts[1])
        if i not in top_name:
            raise ArchitectureMismatchError(f"all_modules.{i} is never called; no flax name")
        owner = modules[".".join(parts[:-1])]
        leaf = parts[-1]
        shape = tuple(t.shape)
        if isinstance(owner, (nn.Conv2d, nn.Linear)) and leaf == "weight":
            flax_leaf = "kernel"
            transform = "conv" if len(shape) == 4 else "dense"
        elif isinstance(owner, nn.GroupNorm) and leaf == "weight":
            flax_leaf, transform = "scale", "none"
        elif leaf == "weight" and len(shape) == 4:            # the FIR Conv2d_0
            flax_leaf, transform = "weight", "conv"
        else:
            flax_leaf, transform = leaf, "none"
        fshape = (shape[2], shape[3], shape[1], shape[0]) if transform == "conv" else \
            (shape[1], shape[0]) if transform == "dense" else shape
        out[key] = FlaxLeaf("/".join([top_name[i], *parts[2:-1], flax_leaf]), transform, fshape)
    return out


def flax_layout(net: nn.Module) -> Dict[str, Tuple[int, ...]]:
    """flax path → flax shape of every parameter of ``net``."""
    return {leaf.path: leaf.shape for leaf in flax_names(net).values()}


def to_torch_tensor(t: torch.Tensor, transform: str) -> torch.Tensor:
    """A flax array in torch layout (contiguous, float copy untouched otherwise)."""
    if transform == "conv":
        return t.permute(3, 2, 0, 1).contiguous()
    if transform == "dense":
        return t.t().contiguous()
    return t

"""Parameter initialisation for the score networks, and layout-only construction.

``variance_scaling_init`` / ``default_init`` reproduce the DDPM / Score SDE initialiser (JAX's
variance scaling, "fan_avg", uniform), so a seeded fpdiff network starts from the same weights as
the original. ``meta_init()`` makes every layer of this package create its parameters on the meta
device: a full-size network's state-dict layout (names, shapes, dtypes) then costs milliseconds and
no memory, which is how a checkpoint's architecture is recognised.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

__all__ = ["meta_init", "init_device", "variance_scaling_init", "default_init"]

# the device new parameters are created on (None: torch's default)
_INIT_DEVICE: Optional[str] = None


@contextlib.contextmanager
def meta_init() -> Iterator[None]:
    """Build modules on the meta device inside this block (layout only, no data)."""
    global _INIT_DEVICE
    previous, _INIT_DEVICE = _INIT_DEVICE, "meta"
    try:
        yield
    finally:
        _INIT_DEVICE = previous


def init_device() -> Optional[str]:
    """The device layers should create parameters on: 'meta' inside ``meta_init()``, else None."""
    return _INIT_DEVICE


def variance_scaling_init(scale: float, mode: str = "fan_avg", distribution: str = "uniform",
                          in_axis: int = 1, out_axis: int = 0) -> Callable[..., torch.Tensor]:
    """``init(shape) -> tensor`` with variance ``scale / fan`` (JAX's ``variance_scaling``).

    fan = fan_in, fan_out or their mean, each including the receptive field (kernel size).
    """

    def init(shape: Sequence[int], dtype: torch.dtype = torch.float32,
             device: Optional[str] = None) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        device = device if device is not None else _INIT_DEVICE
        if device == "meta":
            return torch.empty(*shape, dtype=dtype, device="meta")
        receptive = float(np.prod(shape)) / shape[in_axis] / shape[out_axis]
        fan_in = shape[in_axis] * receptive
        fan_out = shape[out_axis] * receptive
        if mode == "fan_in":
            denom = fan_in
        elif mode == "fan_out":
            denom = fan_out
        elif mode == "fan_avg":
            denom = (fan_in + fan_out) / 2.0
        else:
            raise ValueError(f"unknown variance-scaling mode {mode!r}")
        variance = scale / denom
        if distribution == "normal":
            return torch.randn(*shape, dtype=dtype, device=device) * math.sqrt(variance)
        if distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            return (torch.rand(*shape, dtype=dtype, device=device) * 2.0 - 1.0) * bound
        raise ValueError(f"unknown distribution {distribution!r}")

    return init


def default_init(scale: float = 1.0) -> Callable[..., torch.Tensor]:
    """DDPM's default initialiser; a zero scale means 1e-10 (an almost-zero layer)."""
    return variance_scaling_init(1e-10 if scale == 0 else scale, "fan_avg", "uniform")

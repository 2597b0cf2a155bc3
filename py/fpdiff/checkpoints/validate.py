"""Checks of the scalar fields a checkpoint carries (``step``, EMA decay, learning rate).

A file can hold anything where a number belongs (a nested list, 2**70, a string, −5); each is
refused with ``CorruptCheckpointError`` naming the field, before it reaches the training loop.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from .errors import CorruptCheckpointError

__all__ = ["check_step", "check_fraction", "check_positive_float", "MAX_STEP"]

#: no run takes more updates; also keeps the step an exact float64 and an int64
MAX_STEP = 2 ** 53


def _describe(v: Any) -> str:
    if torch.is_tensor(v) or isinstance(v, np.ndarray):
        return f"an array of shape {list(v.shape)} {str(v.dtype).replace('torch.', '')}"
    r = repr(v)
    return f"a {type(v).__name__} ({r[:40] + '…' if len(r) > 40 else r})"


def _number(v: Any) -> Optional[Any]:
    """A Python int/float from an int/float, a NumPy scalar or a one-element 0-d array/tensor."""
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, np.generic) and v.dtype.kind in "iuf":
        return v.item()
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
        return v.item()
    if torch.is_tensor(v) and v.dim() == 0 and not v.is_complex() and v.dtype != torch.bool:
        return v.item()
    return None


def check_step(value: Any, path: Optional[str], field: str = "step") -> int:
    """A training step: an integer (or integral float) in [0, 2**53]."""
    v = _number(value)
    bad = None
    if v is None:
        bad = f"a number is expected, got {_describe(value)}"
    elif isinstance(v, float) and not (math.isfinite(v) and v == int(v)):
        bad = f"a whole number is expected, got {v!r}"
    elif v < 0:
        bad = f"it must not be negative, got {int(v)}"
    elif v > MAX_STEP:
        bad = f"{int(v)} is beyond any training run (at most 2**53)"
    if bad:
        raise CorruptCheckpointError(f"{path or 'checkpoint'}: field {field!r} is not a step: {bad}",
                                     path=path, field=field)
    return int(v)


def check_fraction(value: Any, path: Optional[str], field: str) -> float:
    """An EMA decay: a finite number in [0, 1]."""
    v = _number(value)
    if v is None or not math.isfinite(float(v)) or not 0.0 <= float(v) <= 1.0:
        raise CorruptCheckpointError(f"{path or 'checkpoint'}: field {field!r} must be a number in "
                                     f"[0, 1], got {_describe(value)}", path=path, field=field)
    return float(v)


def check_positive_float(value: Any, path: Optional[str], field: str) -> float:
    """A learning rate: a finite number ≥ 0."""
    v = _number(value)
    if v is None or not math.isfinite(float(v)) or float(v) < 0:
        raise CorruptCheckpointError(f"{path or 'checkpoint'}: field {field!r} must be a finite "
                                     f"number >= 0, got {_describe(value)}", path=path, field=field)
    return float(v)

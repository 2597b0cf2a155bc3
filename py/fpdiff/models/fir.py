"""FIR up/down-sampling (the StyleGAN2 ``upfirdn2d`` family) in plain PyTorch.

Score SDE's NCSN++ resamples feature maps with a separable FIR filter (default ``[1, 3, 3, 1]``).
The original code compiles a CUDA extension for this at import time; here every operation is
expressed with ``F.pad`` and depthwise ``F.conv2d`` / ``F.conv_transpose2d``, so it runs on any
device, supports channels-last and autocast, and has reverse- and forward-mode derivatives of any
order. This module holds the resampling functions only; the convolution layer that fuses them
with a learned kernel is ``layers.FIRConv2d``.

Conventions (same as the original): a 1-D kernel ``k`` is expanded to ``outer(k, k)`` and
normalised to sum 1; upsampling multiplies it by ``factor**2`` so a constant image keeps its value.
``upfirdn2d`` applies zero-insertion upsampling, padding, a *true* convolution with the kernel
(i.e. correlation with the flipped kernel) and keeps every ``down``-th sample.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "make_kernel",
    "upfirdn2d",
    "upsample_2d",
    "downsample_2d",
    "upsample_conv_2d",
    "conv_downsample_2d",
    "naive_upsample_2d",
    "naive_downsample_2d",
]


def make_kernel(k: Sequence[float] | np.ndarray) -> np.ndarray:
    """2-D, sum-one float32 FIR kernel from a 1-D (separable) or square 2-D description."""
    arr = np.asarray(k, dtype=np.float32)
    if arr.ndim == 1:
        arr = np.outer(arr, arr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"FIR kernel must be 1-D or square 2-D, got shape {arr.shape}")
    return arr / np.sum(arr)


_KERNEL_CACHE: Dict[Tuple, torch.Tensor] = {}


def _kernel_tensor(k: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """The kernel as a tensor on ``like``'s device (cached; float32 unless ``like`` is float64)."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    key = (k.tobytes(), k.shape, like.device, dtype)
    t = _KERNEL_CACHE.get(key)
    if t is None:
        t = torch.as_tensor(k, dtype=dtype, device=like.device)
        if len(_KERNEL_CACHE) > 64:
            _KERNEL_CACHE.clear()
        _KERNEL_CACHE[key] = t
    return t


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter and downsample each channel of ``x`` [N,C,H,W].

    ``pad = (before, after)`` is applied to both spatial axes; negative values crop.
    """
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    if up > 1 and down == 1:
        # zero insertion + padding + filtering is a strided transposed convolution with the
        # (unflipped) kernel, cropped or padded to the requested window: no multiplications by
        # the inserted zeros
        weight = kernel.to(dtype=x.dtype).reshape(1, 1, kh, kw).expand(c, 1, kh, kw)
        y = F.conv_transpose2d(x, weight, stride=up, groups=c)
        left_h, left_w = p0 - (kh - 1), p0 - (kw - 1)
        out_h, out_w = h * up + p0 + p1 - kh + 1, w * up + p0 + p1 - kw + 1
        right_h, right_w = out_h - (y.shape[2] + left_h), out_w - (y.shape[3] + left_w)
        return F.pad(y, [left_w, right_w, left_h, right_h])
    if up > 1:
        # zero insertion: each pixel followed by (up-1) zeros along both axes
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        hh, ww = x.shape[-2:]
        x = x[:, :, max(-p0, 0): hh - max(-p1, 0), max(-p0, 0): ww - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(dtype=x.dtype)
    weight = weight.reshape(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample_2d(x: torch.Tensor, k: Sequence[float] | None = None, factor: int = 2,
                gain: float = 1.0) -> torch.Tensor:
    """FIR-filtered upsampling [N,C,H,W] -> [N,C,H*factor,W*factor]."""
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError("factor must be a positive integer")
    kk = make_kernel([1] * factor if k is None else k) * (gain * factor ** 2)
    p = kk.shape[0] - factor
    return upfirdn2d(x, _kernel_tensor(kk, x), up=factor,
                     pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, k: Sequence[float] | None = None, factor: int = 2,
                  gain: float = 1.0) -> torch.Tensor:
    """FIR-filtered downsampling [N,C,H,W] -> [N,C,H//factor,W//factor]."""
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError("factor must be a positive integer")
    kk = make_kernel([1] * factor if k is None else k) * gain
    p = kk.shape[0] - factor
    return upfirdn2d(x, _kernel_tensor(kk, x), down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: torch.Tensor, w: torch.Tensor, k: Sequence[float] | None = None,
                     factor: int = 2, gain: float = 1.0) -> torch.Tensor:
    """Upsample-then-convolve fused as a strided transposed convolution followed by the FIR filter.

    ``w`` is an ordinary ``[out, in, kh, kw]`` convolution weight (odd, square).
    """
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError("factor must be a positive integer")
    out_c, in_c, kh, kw = w.shape
    if kh != kw:
        raise ValueError("convolution kernel must be square")
    kk = make_kernel([1] * factor if k is None else k) * (gain * factor ** 2)
    p = (kk.shape[0] - factor) - (kw - 1)
    groups = x.shape[1] // in_c
    # transposed-convolution weight: [groups*in, out/groups, kh, kw], spatially flipped
    wt = w.reshape(groups, out_c // groups, in_c, kh, kw)
    wt = torch.flip(wt, [3, 4]).permute(0, 2, 1, 3, 4)
    wt = wt.reshape(groups * in_c, out_c // groups, kh, kw)
    y = F.conv_transpose2d(x, wt, stride=factor, padding=0, groups=groups)
    return upfirdn2d(y, _kernel_tensor(kk, y), pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: torch.Tensor, w: torch.Tensor, k: Sequence[float] | None = None,
                       factor: int = 2, gain: float = 1.0) -> torch.Tensor:
    """FIR filter followed by a strided convolution (downsample-and-convolve fused)."""
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError("factor must be a positive integer")
    _, _, kh, kw = w.shape
    if kh != kw:
        raise ValueError("convolution kernel must be square")
    kk = make_kernel([1] * factor if k is None else k) * gain
    p = (kk.shape[0] - factor) + (kw - 1)
    y = upfirdn2d(x, _kernel_tensor(kk, x), pad=((p + 1) // 2, p // 2))
    return F.conv2d(y, w, stride=factor, padding=0)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling (each pixel repeated ``factor`` x ``factor`` times)."""
    n, c, h, w = x.shape
    y = x.reshape(n, c, h, 1, w, 1).expand(n, c, h, factor, w, factor)
    return y.reshape(n, c, h * factor, w * factor)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Box-filter downsampling (mean over ``factor`` x ``factor`` blocks)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(dim=(3, 5))

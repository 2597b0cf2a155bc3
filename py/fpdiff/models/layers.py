"""Building blocks of NCSN++ / DDPM++.

Attribute names (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0`` ...) and the order in which
each block registers its parameters reproduce Score SDE's ``layerspp`` modules exactly: the
state-dict keys, the ``model.parameters()`` order (which indexes the optimiser state) and the EMA
``shadow_params`` list all depend on them.

Every op here has forward-mode AD formulas in torch 1.13 (GroupNorm, conv, conv-transpose, matmul,
softmax, SiLU, sin/cos, log, pad), so J·v and ∂t s can be taken by ``torch.autograd.forward_ad``
and differentiated again in reverse mode.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fir as firmod
from .initializers import default_init, init_device

_SQRT2 = float(np.sqrt(2.0))


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, dilation: int = 1,
            init_scale: float = 1.0, padding: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=padding,
                     dilation=dilation, bias=bias, device=init_device())
    conv.weight.data = default_init(init_scale)(conv.weight.data.shape)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, init_scale: float = 1.0,
            padding: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, padding=padding, bias=bias,
                     device=init_device())
    conv.weight.data = default_init(init_scale)(conv.weight.data.shape)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def dense(in_dim: int, out_dim: int) -> nn.Linear:
    """``nn.Linear`` with the DDPM initialisation and a zero bias."""
    lin = nn.Linear(in_dim, out_dim, device=init_device())
    lin.weight.data = default_init()(lin.weight.shape)
    nn.init.zeros_(lin.bias)
    return lin


def _forward_ad_active() -> bool:
    level = getattr(torch.autograd.forward_ad, "_current_level", None)
    return True if level is None else level >= 0


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` with two guards, neither of which changes its state dict:

    - half-precision input is normalised in float32 (as CUDA autocast does); torch's CPU autocast
      would otherwise pass bf16 input next to float32 weights and fail;
    - under forward-mode AD a channels-last input is made contiguous: torch 1.13's GroupNorm
      tangent formula calls ``view`` and fails on channels-last tangents.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16) and self.weight is not None \
                and self.weight.dtype != x.dtype:
            x = x.float()
        if not x.is_contiguous() and _forward_ad_active():
            x = x.contiguous()
        return super().forward(x)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm as NCSN++ uses it: min(C/4, 32) groups, eps 1e-6."""
    return GroupNorm(num_groups=min(channels // 4, 32), num_channels=channels, eps=1e-6,
                        device=init_device())


def get_act(name: str) -> nn.Module:
    n = str(name).lower()
    if n == "elu":
        return nn.ELU()
    if n == "relu":
        return nn.ReLU()
    if n == "lrelu":
        return nn.LeakyReLU(negative_slope=0.2)
    if n in ("swish", "silu"):
        return nn.SiLU()
    if n == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown nonlinearity {name!r} (expected elu, relu, lrelu, swish or tanh)")


# ----------------------------------------------------------------------------------------------
# time / noise-level embeddings

def timestep_embedding(timesteps: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding [B] -> [B, dim] (sin half, then cos half; zero-padded if dim is odd)."""
    if timesteps.dim() != 1:
        raise ValueError(f"timesteps must be 1-D, got shape {tuple(timesteps.shape)}")
    half = dim // 2
    rate = math.log(max_positions) / (half - 1)
    # float32 as in the original, or float64 for a float64 network (derivative checks)
    dtype = torch.float64 if timesteps.dtype == torch.float64 else torch.float32
    freqs = torch.exp(torch.arange(half, dtype=dtype, device=timesteps.device) * -rate)
    args = timesteps.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar; ``W`` is fixed (requires_grad=False)."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size, device=init_device()) * scale,
                              requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.W[None, :] * (2 * np.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


# ----------------------------------------------------------------------------------------------
# blocks

class NIN(nn.Module):
    """Per-pixel linear map over channels ("network in network"); parameters ``W`` [in, out], ``b``."""

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(default_init(scale=init_scale)((in_dim, num_units)))
        self.b = nn.Parameter(torch.zeros(num_units, device=init_device()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x.permute(0, 2, 3, 1), self.W) + self.b
        return y.permute(0, 3, 1, 2)


class Combine(nn.Module):
    """Merge the input pyramid into the feature path (1x1 conv, then 'cat' or 'sum')."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat"):
        super().__init__()
        if method not in ("cat", "sum"):
            raise ValueError(f"unknown combine method {method!r}")
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


def softmax_last(z: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis from exp / sum.

    torch 1.13's forward-AD formula for ``F.softmax`` modifies a saved tensor in place, so the
    tangent it produces cannot be differentiated again (the losses backprop through J·v and ∂t s).
    The max shift is detached: softmax is shift-invariant, so no derivative is lost.
    """
    e = torch.exp(z - z.amax(dim=-1, keepdim=True).detach())
    return e / e.sum(dim=-1, keepdim=True)


class AttnBlockpp(nn.Module):
    """Single-head self-attention over all pixels, with a residual connection."""

    def __init__(self, channels: int, skip_rescale: bool = False, init_scale: float = 0.0):
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.GroupNorm_0(x)
        q = self.NIN_0(h).reshape(b, c, hh * ww)
        k = self.NIN_1(h).reshape(b, c, hh * ww)
        v = self.NIN_2(h).reshape(b, c, hh * ww)
        logits = torch.bmm(q.transpose(1, 2), k) * (int(c) ** -0.5)   # [b, query, key]
        attn = softmax_last(logits)
        h = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, hh, ww)
        h = self.NIN_3(h)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class FIRConv2d(nn.Module):
    """A square convolution that optionally up- or down-samples with an FIR filter.

    Parameters are ``weight`` [out, in, k, k] and ``bias`` [out] (Score SDE's
    ``up_or_down_sampling.Conv2d``, whose state-dict names these match).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, up: bool = False, down: bool = False,
                 resample_kernel: Sequence[float] = (1, 3, 3, 1), use_bias: bool = True,
                 kernel_init=None):
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d cannot both upsample and downsample")
        if kernel < 1 or kernel % 2 != 1:
            raise ValueError("kernel size must be a positive odd integer")
        dev = init_device()
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel, kernel, device=dev))
        if kernel_init is not None:
            self.weight.data = kernel_init(self.weight.data.shape)
        if use_bias:
            self.bias = nn.Parameter(torch.zeros(out_ch, device=dev))
        self.up = up
        self.down = down
        self.resample_kernel = tuple(resample_kernel)
        self.kernel = kernel
        self.use_bias = use_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            y = firmod.upsample_conv_2d(x, self.weight, k=self.resample_kernel)
        elif self.down:
            y = firmod.conv_downsample_2d(x, self.weight, k=self.resample_kernel)
        else:
            y = F.conv2d(x, self.weight, stride=1, padding=self.kernel // 2)
        if self.use_bias:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y


class _Resample(nn.Module):
    """×2 resampling as Score SDE's NCSN++ does it: an FIR filter (fused with a 3×3 conv when
    ``with_conv``), else nearest-neighbour / average pooling with an optional 3×3 conv. Submodule
    names (``Conv2d_0`` for the FIR conv, ``Conv_0`` for the plain one) are the original's."""

    up: bool

    def __init__(self, in_ch: Optional[int] = None, out_ch: Optional[int] = None,
                 with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch if out_ch else in_ch
        if with_conv and fir:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, kernel=3, up=self.up, down=not self.up,
                                      resample_kernel=fir_kernel, use_bias=True,
                                      kernel_init=default_init())
        elif with_conv:
            self.Conv_0 = conv3x3(in_ch, out_ch) if self.up else conv3x3(in_ch, out_ch, stride=2, padding=0)
        self.fir = fir
        self.with_conv = with_conv
        self.fir_kernel = tuple(fir_kernel)
        self.out_ch = out_ch


class Upsample(_Resample):
    up = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else firmod.upsample_2d(x, self.fir_kernel, factor=2)
        _, _, hh, ww = x.shape
        h = F.interpolate(x, (hh * 2, ww * 2), mode="nearest")
        return self.Conv_0(h) if self.with_conv else h


class Downsample(_Resample):
    up = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else firmod.downsample_2d(x, self.fir_kernel, factor=2)
        if self.with_conv:
            # 'SAME' padding of a stride-2 3x3 conv on an even size: one extra row/column after
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, stride=2)


class _ResidualBlock(nn.Module):
    """What both residual blocks share, under the original's layer names: GroupNorm_0 → act →
    Conv_0 (+ Dense_0 of the time embedding) → GroupNorm_1 → act → Dropout_0 → Conv_1, and the
    skip connection's sum (÷√2 with `skip_rescale`). Built in the original's order, so parameters
    are created (and randomly initialised) in the same sequence."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: Optional[int], dropout: float, init_scale: float):
        super().__init__()
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)

    def _after_conv0(self, h: torch.Tensor, temb: Optional[torch.Tensor]) -> torch.Tensor:
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        return self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))

    def _skip(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class ResnetBlockDDPMpp(_ResidualBlock):
    """DDPM residual block (no resampling inside); NIN or 3x3 conv shortcut when widths differ."""

    def __init__(self, act: nn.Module, in_ch: int, out_ch: Optional[int] = None,
                 temb_dim: Optional[int] = None, conv_shortcut: bool = False, dropout: float = 0.1,
                 skip_rescale: bool = False, init_scale: float = 0.0):
        out_ch = out_ch if out_ch else in_ch
        super().__init__(in_ch, out_ch, temb_dim, dropout, init_scale)
        if in_ch != out_ch:
            if conv_shortcut:
                self.Conv_2 = conv3x3(in_ch, out_ch)
            else:
                self.NIN_0 = NIN(in_ch, out_ch)
        self.skip_rescale = skip_rescale
        self.act = act
        self.out_ch = out_ch
        self.conv_shortcut = conv_shortcut

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self._after_conv0(self.Conv_0(self.act(self.GroupNorm_0(x))), temb)
        if x.shape[1] != self.out_ch:
            x = self.Conv_2(x) if self.conv_shortcut else self.NIN_0(x)
        return self._skip(x, h)


class ResnetBlockBigGANpp(_ResidualBlock):
    """BigGAN-style residual block that can up- or downsample (FIR or nearest/box)."""

    def __init__(self, act: nn.Module, in_ch: int, out_ch: Optional[int] = None,
                 temb_dim: Optional[int] = None, up: bool = False, down: bool = False,
                 dropout: float = 0.1, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True,
                 init_scale: float = 0.0):
        out_ch = out_ch if out_ch else in_ch
        super().__init__(in_ch, out_ch, temb_dim, dropout, init_scale)
        self.up = up
        self.down = down
        self.fir = fir
        self.fir_kernel = tuple(fir_kernel)
        if in_ch != out_ch or up or down:
            self.Conv_2 = conv1x1(in_ch, out_ch)
        self.skip_rescale = skip_rescale
        self.act = act
        self.in_ch = in_ch
        self.out_ch = out_ch

    def _resample(self, t: torch.Tensor) -> torch.Tensor:
        if self.up:
            return (firmod.upsample_2d(t, self.fir_kernel, factor=2) if self.fir
                    else firmod.naive_upsample_2d(t, factor=2))
        if self.down:
            return (firmod.downsample_2d(t, self.fir_kernel, factor=2) if self.fir
                    else firmod.naive_downsample_2d(t, factor=2))
        return t

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self._resample(self.act(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self._after_conv0(self.Conv_0(h), temb)
        if self.in_ch != self.out_ch or self.up or self.down:
            x = self.Conv_2(x)
        return self._skip(x, h)

"""NCSN++ (Song et al. 2021), the U-Net behind Score SDE's NCSN++ and DDPM++ checkpoints.

One class serves both: DDPM++ is this network with positional embeddings, no FIR filter and no
input pyramid (see ``ddpmpp.py``). All sub-modules live in one flat ``all_modules`` ModuleList in
the order the original creates them, so state-dict keys (``all_modules.<i>.<name>``), the parameter
order, the EMA shadow list and the optimiser indices of a Score SDE checkpoint line up with ours.

``forward(x, labels)``: ``labels`` is what the original network receives — σ(t) for the Fourier
embedding (VE), 999·t for the positional embedding (VP / subVP). With ``scale_by_sigma`` the output
is divided by the noise level. Input in [0, 1] is mapped to [-1, 1] unless the data are centred.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
import torch
import torch.nn as nn

from . import layers
from ._config import ConfigView
from .presets import KIND_DEFAULTS

_SQRT2 = float(np.sqrt(2.0))


def noise_levels(sigma_min: float, sigma_max: float, num_scales: int) -> np.ndarray:
    """The discrete geometric noise levels σ_max → σ_min (float64), kept as the ``sigmas`` buffer."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), int(num_scales)))


class NCSNpp(nn.Module):
    """NCSN++ / DDPM++ score network; see the module docstring."""

    def __init__(self, model_cfg: Any, data_cfg: Any):
        super().__init__()
        kind = ConfigView(model_cfg).get("kind", "ncsnpp")
        cfg = ConfigView(model_cfg, KIND_DEFAULTS.get(kind, KIND_DEFAULTS["ncsnpp"]))
        data = ConfigView(data_cfg, {"image_size": 32, "num_channels": 3, "centered": False})

        self.act = act = layers.get_act(cfg.nonlinearity)
        self.register_buffer("sigmas", torch.tensor(
            noise_levels(cfg.sigma_min, cfg.sigma_max, cfg.num_scales)))

        if str(cfg.normalization) != "GroupNorm":
            raise ValueError(f"NCSN++ supports normalization 'GroupNorm' only, got {cfg.normalization!r}")
        if str(cfg.get("attention_type", "ddpm")).lower() != "ddpm":
            raise ValueError(f"unsupported attention_type {cfg.attention_type!r} (only 'ddpm')")

        self.nf = nf = int(cfg.nf)
        ch_mult = [int(m) for m in cfg.ch_mult]
        self.num_res_blocks = num_res_blocks = int(cfg.num_res_blocks)
        self.attn_resolutions = attn_resolutions = tuple(int(r) for r in cfg.attn_resolutions)
        dropout = float(cfg.dropout)
        resamp_with_conv = bool(cfg.resamp_with_conv)
        self.num_resolutions = num_resolutions = len(ch_mult)
        image_size = int(data.image_size)
        self.all_resolutions = all_resolutions = [image_size // (2 ** i) for i in range(num_resolutions)]
        self.conditional = conditional = bool(cfg.conditional)
        fir = bool(cfg.fir)
        fir_kernel = tuple(cfg.fir_kernel)
        self.skip_rescale = skip_rescale = bool(cfg.skip_rescale)
        self.resblock_type = resblock_type = str(cfg.resblock_type).lower()
        self.progressive = progressive = str(cfg.progressive).lower()
        self.progressive_input = progressive_input = str(cfg.progressive_input).lower()
        self.embedding_type = embedding_type = str(cfg.embedding_type).lower()
        self.combine_method = combine_method = str(cfg.progressive_combine).lower()
        self.scale_by_sigma = bool(cfg.scale_by_sigma)
        self.centered = bool(data.centered)
        init_scale = float(cfg.init_scale)
        channels = int(data.num_channels)

        if progressive not in ("none", "output_skip", "residual"):
            raise ValueError(f"unknown progressive {progressive!r}")
        if progressive_input not in ("none", "input_skip", "residual"):
            raise ValueError(f"unknown progressive_input {progressive_input!r}")
        if embedding_type not in ("fourier", "positional"):
            raise ValueError(f"unknown embedding_type {embedding_type!r}")
        if resblock_type not in ("ddpm", "biggan"):
            raise ValueError(f"unknown resblock_type {resblock_type!r}")
        if combine_method not in ("cat", "sum"):
            raise ValueError(f"unknown progressive_combine {combine_method!r}")

        temb_dim = nf * 4

        def attn(ch: int) -> nn.Module:
            return layers.AttnBlockpp(channels=ch, init_scale=init_scale, skip_rescale=skip_rescale)

        def resblock(in_ch: int, out_ch: Optional[int] = None, up: bool = False,
                     down: bool = False) -> nn.Module:
            if resblock_type == "ddpm":
                return layers.ResnetBlockDDPMpp(act=act, in_ch=in_ch, out_ch=out_ch,
                                                temb_dim=temb_dim, dropout=dropout,
                                                init_scale=init_scale, skip_rescale=skip_rescale)
            return layers.ResnetBlockBigGANpp(act=act, in_ch=in_ch, out_ch=out_ch,
                                              temb_dim=temb_dim, up=up, down=down, dropout=dropout,
                                              fir=fir, fir_kernel=fir_kernel, init_scale=init_scale,
                                              skip_rescale=skip_rescale)

        if progressive == "output_skip":
            self.pyramid_upsample = layers.Upsample(fir=fir, fir_kernel=fir_kernel, with_conv=False)
        if progressive_input == "input_skip":
            self.pyramid_downsample = layers.Downsample(fir=fir, fir_kernel=fir_kernel,
                                                        with_conv=False)

        mods: List[nn.Module] = []

        # time / noise-level embedding
        if embedding_type == "fourier":
            mods.append(layers.GaussianFourierProjection(embedding_size=nf,
                                                         scale=float(cfg.fourier_scale)))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        if conditional:
            mods.append(layers.dense(embed_dim, temb_dim))
            mods.append(layers.dense(temb_dim, temb_dim))

        # encoder
        pyramid_in_ch = channels
        mods.append(layers.conv3x3(channels, nf))
        skip_ch = [nf]
        in_ch = nf
        for level in range(num_resolutions):
            for _ in range(num_res_blocks):
                out_ch = nf * ch_mult[level]
                mods.append(resblock(in_ch, out_ch))
                in_ch = out_ch
                if all_resolutions[level] in attn_resolutions:
                    mods.append(attn(in_ch))
                skip_ch.append(in_ch)
            if level != num_resolutions - 1:
                if resblock_type == "ddpm":
                    mods.append(layers.Downsample(in_ch=in_ch, with_conv=resamp_with_conv, fir=fir,
                                                  fir_kernel=fir_kernel))
                else:
                    mods.append(resblock(in_ch, down=True))
                if progressive_input == "input_skip":
                    mods.append(layers.Combine(dim1=pyramid_in_ch, dim2=in_ch, method=combine_method))
                    if combine_method == "cat":
                        in_ch *= 2
                elif progressive_input == "residual":
                    mods.append(layers.Downsample(in_ch=pyramid_in_ch, out_ch=in_ch, with_conv=True,
                                                  fir=fir, fir_kernel=fir_kernel))
                    pyramid_in_ch = in_ch
                skip_ch.append(in_ch)

        # middle
        in_ch = skip_ch[-1]
        mods.append(resblock(in_ch))
        mods.append(attn(in_ch))
        mods.append(resblock(in_ch))

        # decoder
        pyramid_ch = 0
        for level in reversed(range(num_resolutions)):
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[level]
                mods.append(resblock(in_ch + skip_ch.pop(), out_ch))
                in_ch = out_ch
            if all_resolutions[level] in attn_resolutions:
                mods.append(attn(in_ch))
            if progressive != "none":
                if level == num_resolutions - 1:
                    mods.append(layers.group_norm(in_ch))
                    if progressive == "output_skip":
                        mods.append(layers.conv3x3(in_ch, channels, init_scale=init_scale))
                        pyramid_ch = channels
                    else:
                        mods.append(layers.conv3x3(in_ch, in_ch, bias=True))
                        pyramid_ch = in_ch
                elif progressive == "output_skip":
                    mods.append(layers.group_norm(in_ch))
                    mods.append(layers.conv3x3(in_ch, channels, bias=True, init_scale=init_scale))
                    pyramid_ch = channels
                else:
                    mods.append(layers.Upsample(in_ch=pyramid_ch, out_ch=in_ch, with_conv=True,
                                                fir=fir, fir_kernel=fir_kernel))
                    pyramid_ch = in_ch
            if level != 0:
                if resblock_type == "ddpm":
                    mods.append(layers.Upsample(in_ch=in_ch, with_conv=resamp_with_conv, fir=fir,
                                                fir_kernel=fir_kernel))
                else:
                    mods.append(resblock(in_ch, up=True))
        assert not skip_ch, "skip-connection bookkeeping is off"

        if progressive != "output_skip":
            mods.append(layers.group_norm(in_ch))
            mods.append(layers.conv3x3(in_ch, channels, init_scale=init_scale))

        self.all_modules = nn.ModuleList(mods)

    # ------------------------------------------------------------------------------------------
    def _merge(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b) / _SQRT2 if self.skip_rescale else a + b

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mods = iter(self.all_modules)
        take = mods.__next__

        if labels.dim() == 0:
            labels = labels.expand(x.shape[0])
        if x.is_floating_point() and labels.dtype != x.dtype:
            labels = labels.to(x.dtype)
        if self.embedding_type == "fourier":
            used_sigmas = labels
            temb = take()(torch.log(labels))
        else:
            # the original indexes its discrete sigmas with the (truncated) label; it only
            # matters for the unusual combination positional embedding + scale_by_sigma
            used_sigmas = self.sigmas[labels.long()] if self.scale_by_sigma else None
            temb = layers.timestep_embedding(labels, self.nf)
        if self.conditional:
            temb = take()(temb)
            temb = take()(self.act(temb))
        else:
            temb = None

        if not self.centered:
            x = 2 * x - 1.0

        # encoder
        pyramid_in = x if self.progressive_input != "none" else None
        hs = [take()(x)]
        for level in range(self.num_resolutions):
            for _ in range(self.num_res_blocks):
                h = take()(hs[-1], temb)
                if self.all_resolutions[level] in self.attn_resolutions:
                    h = take()(h)
                hs.append(h)
            if level != self.num_resolutions - 1:
                if self.resblock_type == "ddpm":
                    h = take()(hs[-1])
                else:
                    h = take()(hs[-1], temb)
                if self.progressive_input == "input_skip":
                    pyramid_in = self.pyramid_downsample(pyramid_in)
                    h = take()(pyramid_in, h)
                elif self.progressive_input == "residual":
                    pyramid_in = self._merge(take()(pyramid_in), h)
                    h = pyramid_in
                hs.append(h)

        # middle
        h = hs[-1]
        h = take()(h, temb)
        h = take()(h)
        h = take()(h, temb)

        # decoder
        pyramid = None
        for level in reversed(range(self.num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                h = take()(torch.cat([h, hs.pop()], dim=1), temb)
            if self.all_resolutions[level] in self.attn_resolutions:
                h = take()(h)
            if self.progressive != "none":
                if level == self.num_resolutions - 1:
                    norm, conv = take(), take()
                    pyramid = conv(self.act(norm(h)))
                elif self.progressive == "output_skip":
                    norm, conv = take(), take()
                    pyramid = self.pyramid_upsample(pyramid) + conv(self.act(norm(h)))
                else:
                    pyramid = self._merge(take()(pyramid), h)
                    h = pyramid
            if level != 0:
                if self.resblock_type == "ddpm":
                    h = take()(h)
                else:
                    h = take()(h, temb)
        assert not hs, "skip-connection bookkeeping is off"

        if self.progressive == "output_skip":
            h = pyramid
        else:
            norm, conv = take(), take()
            h = conv(self.act(norm(h)))
        assert next(mods, None) is None, "not every module was used"

        if self.scale_by_sigma:
            h = h / used_sigmas.reshape(x.shape[0], *([1] * (x.dim() - 1)))
        return h

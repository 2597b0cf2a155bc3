"""NCSN++ (Song et al. 2021), the U-Net behind Score SDE's NCSN++ and DDPM++ checkpoints.

One class serves both: DDPM++ is this network with positional embeddings, no FIR filter and no
input pyramid (``ddpmpp.DDPMpp`` only changes the defaults). All sub-modules live in one flat ``all_modules`` ModuleList in
the order the original creates them, so state-dict keys (``all_modules.<i>.<name>``), the parameter
order, the EMA shadow list and the optimiser indices of a Score SDE checkpoint line up with ours.

``forward(x, labels)``: ``labels`` is what the original network receives — σ(t) for the Fourier
embedding (VE), 999·t for the positional embedding (VP / subVP). With ``scale_by_sigma`` the output
is divided by the noise level. Input in [0, 1] is mapped to [-1, 1] unless the data are centred.
"""

from __future__ import annotations

from typing import List, Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import layers

_SQRT2 = float(np.sqrt(2.0))

Nonlinearity = Literal["elu", "relu", "lrelu", "swish"]
ResblockType = Literal["ddpm", "biggan"]
Progressive = Literal["none", "output_skip", "residual"]
ProgressiveInput = Literal["none", "input_skip", "residual"]
CombineMethod = Literal["sum", "cat"]
EmbeddingType = Literal["fourier", "positional"]


def noise_levels(sigma_min: float, sigma_max: float, num_scales: int) -> np.ndarray:
    """The discrete geometric noise levels σ_max → σ_min (float64), kept as the ``sigmas`` buffer."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), int(num_scales)))


def _one_of(name: str, value: str, allowed: Sequence[str]) -> str:
    v = str(value).lower()
    if v not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return v


class NCSNpp(nn.Module):
    """NCSN++ / DDPM++ score network (see the module docstring); defaults: VE NCSN++ cont. CIFAR-10.

    The defaults reproduce Score SDE's ``ve/cifar10_ncsnpp_continuous`` network; ``DDPMpp`` is this
    class with the ``vp/cifar10_ddpmpp_continuous`` defaults. Every argument is keyword-only.

    Data:
        image_size: height = width of the input (a power of two times ``2**(len(ch_mult)-1)``).
        num_channels: input and output channels.
        centered: the input is already in [-1, 1]; otherwise x ∈ [0, 1] is mapped to 2x − 1.
    Widths and depth:
        nf: base channel count; level i has ``nf * ch_mult[i]`` channels, the embedding 4·nf.
        ch_mult: channel multiplier per resolution level (one level per entry).
        num_res_blocks: residual blocks per level in the encoder (one more in the decoder).
        attn_resolutions: feature-map sizes after whose blocks self-attention is inserted.
        dropout: dropout rate inside the residual blocks.
    Blocks and resampling:
        resblock_type: "biggan" (blocks that resample themselves) or "ddpm" (separate
            Up/Downsample layers).
        resamp_with_conv: the separate Up/Downsample layers ("ddpm" blocks) carry a convolution.
        fir: resample with the FIR filter ``fir_kernel`` (else nearest / box resampling).
        fir_kernel: 1-D taps of the separable FIR filter.
        skip_rescale: residual sums are divided by √2.
        init_scale: scale of the variance-scaling initialiser of each block's last layer
            (0 means 1e-10, an almost-zero residual branch).
        nonlinearity: activation everywhere ("swish" is SiLU).
    Input / output pyramids (the progressive-growing paths of StyleGAN2):
        progressive: output path, "none", "output_skip" or "residual".
        progressive_input: input path, "none", "input_skip" or "residual".
        progressive_combine: how "input_skip" merges the pyramid: "sum" or "cat".
    Conditioning:
        conditional: condition the blocks on the time / noise-level embedding.
        embedding_type: "fourier" (random Fourier features of log σ; labels are σ) or
            "positional" (sinusoidal embedding of the label, 999·t for VP / subVP).
        fourier_scale: standard deviation of the fixed Fourier frequencies.
        scale_by_sigma: divide the output by the noise level (the label for "fourier"; the
            discrete ``sigmas[label]`` otherwise).
        sigma_min, sigma_max, num_scales: the discrete geometric noise levels kept as the
            ``sigmas`` buffer (part of the original's state dict).
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        num_channels: int = 3,
        centered: bool = False,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resblock_type: ResblockType = "biggan",
        resamp_with_conv: bool = True,
        fir: bool = True,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
        nonlinearity: Nonlinearity = "swish",
        progressive: Progressive = "none",
        progressive_input: ProgressiveInput = "residual",
        progressive_combine: CombineMethod = "sum",
        conditional: bool = True,
        embedding_type: EmbeddingType = "fourier",
        fourier_scale: float = 16.0,
        scale_by_sigma: bool = True,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        num_scales: int = 1000,
    ):
        super().__init__()
        self.act = act = layers.get_act(nonlinearity)
        self.register_buffer("sigmas", torch.tensor(noise_levels(sigma_min, sigma_max, num_scales)))

        self.nf = nf = int(nf)
        ch_mult = [int(m) for m in ch_mult]
        self.num_res_blocks = num_res_blocks = int(num_res_blocks)
        self.attn_resolutions = attn_resolutions = tuple(int(r) for r in attn_resolutions)
        dropout = float(dropout)
        resamp_with_conv = bool(resamp_with_conv)
        self.num_resolutions = num_resolutions = len(ch_mult)
        image_size = int(image_size)
        self.all_resolutions = all_resolutions = [image_size // (2 ** i) for i in range(num_resolutions)]
        self.conditional = conditional = bool(conditional)
        fir = bool(fir)
        fir_kernel = tuple(fir_kernel)
        self.skip_rescale = skip_rescale = bool(skip_rescale)
        self.resblock_type = resblock_type = _one_of("resblock_type", resblock_type, ("ddpm", "biggan"))
        self.progressive = progressive = _one_of(
            "progressive", progressive, ("none", "output_skip", "residual"))
        self.progressive_input = progressive_input = _one_of(
            "progressive_input", progressive_input, ("none", "input_skip", "residual"))
        self.embedding_type = embedding_type = _one_of(
            "embedding_type", embedding_type, ("fourier", "positional"))
        self.combine_method = combine_method = _one_of(
            "progressive_combine", progressive_combine, ("cat", "sum"))
        self.scale_by_sigma = bool(scale_by_sigma)
        self.centered = bool(centered)
        init_scale = float(init_scale)
        channels = int(num_channels)

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
                                                         scale=float(fourier_scale)))
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

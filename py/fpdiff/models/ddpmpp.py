"""DDPM++: Score SDE's NCSN++ class with the DDPM++ options as defaults.

In the original code DDPM++ is not a separate network: its configs use ``model.name = 'ncsnpp'``
with positional embeddings, ``fir = False`` and ``progressive_input = 'none'``, and train on centred
data. ``DDPMpp`` is ``NCSNpp`` with those defaults (the ``vp/cifar10_ddpmpp_continuous`` network);
its modules, state dict and forward pass are NCSN++'s.
"""

from __future__ import annotations

from typing import Sequence

from .ncsnpp import (CombineMethod, EmbeddingType, NCSNpp, Nonlinearity, Progressive,
                     ProgressiveInput, ResblockType)


class DDPMpp(NCSNpp):
    """NCSN++ with Score SDE's DDPM++ defaults; every argument as documented on ``NCSNpp``.

    Differences from ``NCSNpp()``: ``centered=True``, ``fir=False``, ``progressive_input="none"``,
    ``embedding_type="positional"`` (labels are 999·t), ``scale_by_sigma=False``.
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        num_channels: int = 3,
        centered: bool = True,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resblock_type: ResblockType = "biggan",
        resamp_with_conv: bool = True,
        fir: bool = False,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
        nonlinearity: Nonlinearity = "swish",
        progressive: Progressive = "none",
        progressive_input: ProgressiveInput = "none",
        progressive_combine: CombineMethod = "sum",
        conditional: bool = True,
        embedding_type: EmbeddingType = "positional",
        fourier_scale: float = 16.0,
        scale_by_sigma: bool = False,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        num_scales: int = 1000,
    ):
        super().__init__(
            image_size=image_size, num_channels=num_channels, centered=centered, nf=nf,
            ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
            dropout=dropout, resblock_type=resblock_type, resamp_with_conv=resamp_with_conv,
            fir=fir, fir_kernel=fir_kernel, skip_rescale=skip_rescale, init_scale=init_scale,
            nonlinearity=nonlinearity, progressive=progressive,
            progressive_input=progressive_input, progressive_combine=progressive_combine,
            conditional=conditional, embedding_type=embedding_type, fourier_scale=fourier_scale,
            scale_by_sigma=scale_by_sigma, sigma_min=sigma_min, sigma_max=sigma_max,
            num_scales=num_scales)

"""Config → network: the one place that reads a model or data config.

``build_network(model_cfg, data_cfg)`` maps the fields of the config dataclasses
(``fpdiff.config``: ``NCSNppConfig`` / ``DDPMppConfig`` / ``MLPConfig`` with ``CIFAR10Config`` /
``ImageNet32Config`` / ``ToyDataConfig``) onto the networks' keyword arguments. The networks
themselves take plain arguments only, so they can be built without any config object.
"""

from __future__ import annotations

from typing import Any, Tuple, Type

import torch.nn as nn

from .ddpmpp import DDPMpp
from .mlp import ToyScoreMLP
from .ncsnpp import NCSNpp

KINDS = ("ncsnpp", "ddpmpp", "mlp")
_IMAGE_DATA = ("cifar10", "imagenet32")


def _image_kwargs(m: Any, d: Any) -> dict:
    # settings the config may state but the network has one value for: refuse the others rather
    # than build something other than what was asked (conv_size: the original ignores it; every
    # convolution of NCSN++ is 3×3 or 1×1)
    for name, only in (("normalization", "GroupNorm"), ("attention_type", "ddpm"), ("conv_size", 3)):
        if getattr(m, name) != only:
            raise ValueError(f"model.{name}: NCSN++ supports {only!r} only; got {getattr(m, name)!r}")
    # levels the image cannot be halved into, or attention at a resolution the network never
    # reaches, would build a network other than the one asked for
    levels = len(m.ch_mult)
    if d.image_size % 2 ** (levels - 1):
        raise ValueError(f"model.chMult: {levels} resolution levels need an image size divisible by "
                         f"{2 ** (levels - 1)}, got {d.image_size}")
    resolutions = [d.image_size // 2**i for i in range(levels)]
    for i, r in enumerate(m.attn_resolutions):
        if r not in resolutions:
            raise ValueError(f"model.attnResolutions[{i}]: {r} is not a resolution of this network ({resolutions})")
    return dict(
        image_size=d.image_size, num_channels=d.num_channels, centered=d.centered,
        nf=m.nf, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
        attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout,
        resblock_type=m.resblock_type, resamp_with_conv=m.resamp_with_conv, fir=m.fir,
        fir_kernel=tuple(m.fir_kernel), skip_rescale=m.skip_rescale, init_scale=m.init_scale,
        nonlinearity=m.nonlinearity, progressive=m.progressive,
        progressive_input=m.progressive_input, progressive_combine=m.progressive_combine,
        conditional=m.conditional, embedding_type=m.embedding_type,
        fourier_scale=m.fourier_scale, scale_by_sigma=m.scale_by_sigma,
        sigma_min=m.sigma_min, sigma_max=m.sigma_max, num_scales=m.num_scales,
    )


def _mlp_kwargs(m: Any, d: Any) -> dict:
    if d.dim is None:
        raise ValueError(f"data.dim: the toy network needs the data dimension; {d.dataset!r} has none "
                         "set (resolve the experiment first, or set dim)")
    return dict(dim=d.dim, embed_dim=m.embed_dim, time_hidden=tuple(m.time_hidden),
                x_hidden=tuple(m.x_hidden), width=m.width, hidden=tuple(m.hidden),
                nonlinearity=m.nonlinearity, param=m.param)


def network_arguments(model_cfg: Any, data_cfg: Any) -> Tuple[Type[nn.Module], dict]:
    """The network class a config pair names and the keyword arguments it passes to it.

    ``ncsnpp`` → ``NCSNpp``, ``ddpmpp`` → ``DDPMpp`` (both need image data), ``mlp`` →
    ``ToyScoreMLP`` (toy data).
    """
    kind, data_kind = model_cfg.kind, data_cfg.kind
    if kind in ("ncsnpp", "ddpmpp"):
        if data_kind not in _IMAGE_DATA:
            raise ValueError(f"model.kind {kind!r} is an image network; data.kind {data_kind!r} is not "
                             f"image data ({', '.join(_IMAGE_DATA)})")
        return (NCSNpp if kind == "ncsnpp" else DDPMpp), _image_kwargs(model_cfg, data_cfg)
    if kind == "mlp":
        if data_kind != "toy":
            raise ValueError(f"model.kind 'mlp' is the toy network; data.kind must be 'toy', got {data_kind!r}")
        return ToyScoreMLP, _mlp_kwargs(model_cfg, data_cfg)
    raise ValueError(f"model.kind: unknown {kind!r}; expected one of {', '.join(KINDS)}")


def build_network(model_cfg: Any, data_cfg: Any) -> nn.Module:
    """The network a model config describes for a data config (fresh initialisation, float32).

    Inside ``meta_init()`` only the layout (names, shapes, dtypes) is built.
    """
    cls, kwargs = network_arguments(model_cfg, data_cfg)
    return cls(**kwargs)

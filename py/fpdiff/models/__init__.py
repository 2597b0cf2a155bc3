"""Score networks: NCSN++ / DDPM++ (Score SDE) and the toy MLP.

``build_network(model_cfg, data_cfg) -> nn.Module`` with ``forward(x, labels)``; parameter and
buffer names equal the original's (contracts.md §2). Configs may be Mappings or attribute objects
with Score SDE's ``config.model`` field names plus ``kind``.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ._config import ConfigView, cfg_get
from .ddpmpp import build_ddpmpp
from .ema import EMA
from .mlp import ToyScoreMLP
from .ncsnpp import NCSNpp
from .presets import PRESETS, preset

KINDS = ("ncsnpp", "ddpmpp", "mlp")


def build_network(model_cfg: Any, data_cfg: Any = None) -> nn.Module:
    """Instantiate the network a model config describes (fresh initialisation, CPU, float32)."""
    kind = str(cfg_get(model_cfg, "kind", "ncsnpp")).lower()
    _check_fit(kind, model_cfg, data_cfg)
    if kind == "ncsnpp":
        return NCSNpp(model_cfg, data_cfg)
    if kind == "ddpmpp":
        return build_ddpmpp(model_cfg, data_cfg)
    if kind == "mlp":
        return ToyScoreMLP(model_cfg, data_cfg)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")


def _check_fit(kind: str, model_cfg: Any, data_cfg: Any) -> None:
    """Refuses a network that would silently differ from the one asked for: an image network on
    toy data (or the reverse), more resolution levels than the image has, attention at a
    resolution the network never reaches."""
    if data_cfg is None:
        return
    image_data = cfg_get(data_cfg, "kind", "cifar10") in ("cifar10", "imagenet32")
    if (kind == "mlp") == image_data:
        raise ValueError(f"a {kind} network does not fit {cfg_get(data_cfg, 'kind')} data")
    if kind == "mlp":
        return
    size = int(cfg_get(data_cfg, "image_size", 32))
    levels = len(tuple(cfg_get(model_cfg, "ch_mult", (1, 2, 2, 2))))
    if size % 2 ** (levels - 1):
        raise ValueError(f"{levels} resolution levels need an image size divisible by {2 ** (levels - 1)}, got {size}")
    resolutions = [size // 2**i for i in range(levels)]
    for r in cfg_get(model_cfg, "attn_resolutions", (16,)):
        if r not in resolutions:
            raise ValueError(f"attention at resolution {r}, which this network never has ({resolutions})")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["build_network", "count_parameters", "NCSNpp", "ToyScoreMLP", "EMA", "ConfigView",
           "cfg_get", "PRESETS", "preset", "KINDS"]

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
    if kind == "ncsnpp":
        return NCSNpp(model_cfg, data_cfg)
    if kind == "ddpmpp":
        return build_ddpmpp(model_cfg, data_cfg)
    if kind == "mlp":
        return ToyScoreMLP(model_cfg, data_cfg)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["build_network", "count_parameters", "NCSNpp", "ToyScoreMLP", "EMA", "ConfigView",
           "cfg_get", "PRESETS", "preset", "KINDS"]

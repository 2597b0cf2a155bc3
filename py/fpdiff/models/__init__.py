"""Score networks: NCSN++ / DDPM++ (Score SDE) and the toy MLP.

The networks take explicit keyword arguments (``NCSNpp(nf=64, num_res_blocks=2)``,
``DDPMpp()``, ``ToyScoreMLP(dim=2)``); ``build_network(model_cfg, data_cfg)`` is the only reader
of the model and data configs. Every network has ``forward(x, labels)``; parameter and buffer
names equal the original's (docs/contracts.md §2). ``ARCHITECTURES`` names the original Score SDE
networks whose checkpoints fpdiff recognises.
"""

from __future__ import annotations

import torch.nn as nn

from .architectures import ARCHITECTURES, Architecture, architecture
from .build import KINDS, build_network, network_arguments
from .ddpmpp import DDPMpp
from .ema import EMA
from .initializers import meta_init
from .mlp import ToyScoreMLP
from .ncsnpp import NCSNpp


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter entries (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["build_network", "network_arguments", "count_parameters", "NCSNpp", "DDPMpp",
           "ToyScoreMLP", "EMA", "meta_init", "ARCHITECTURES", "Architecture", "architecture",
           "KINDS"]

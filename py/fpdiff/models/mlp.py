"""The toy score network of the high-order DSM paper (FACTS §4).

ε̂ = net([x_encoder(x), t_encoder(emb(t))]) with a 64-dim sinusoidal embedding of the *raw time*
t ∈ [ε, 1] (not σ(t), not 999·t), encoders MLP[128,128] → 128, decoder MLP[512,512] → D and SiLU.
The network predicts ε̂ (trained so that ε̂ ≈ −z); the score is ε̂ / std(t) (``fpdiff.score``).
Parameter names follow the original toy (``t_encoder.layers.<i>``, ``x_encoder…``, ``net…``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from . import layers
from ._config import ConfigView
from .presets import MLP_DEFAULTS


class MLP(nn.Module):
    """Linear layers with an activation between them (none after the last)."""

    def __init__(self, input_dim: int, widths: Sequence[int], act: nn.Module):
        super().__init__()
        dims = [int(input_dim)] + [int(w) for w in widths]
        self.layers = nn.ModuleList(nn.Linear(a, b, device=layers.init_device())
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


class ToyScoreMLP(nn.Module):
    def __init__(self, model_cfg: Any, data_cfg: Any):
        super().__init__()
        cfg = ConfigView(model_cfg, MLP_DEFAULTS)
        data = ConfigView(data_cfg)
        dim = data.get("dim", None)
        if dim is None:   # the named 2-D toys leave dim implicit; the 1-D mixture is 1-D
            dim = 1 if str(data.get("dataset", "")) == "mog1d" else 2
        dim = int(dim)
        self.dim = dim
        self.embed_dim = int(cfg.embed_dim)
        width = int(cfg.width)
        act = layers.get_act(cfg.nonlinearity)
        self.net = MLP(2 * width, list(cfg.hidden) + [dim], act)
        self.t_encoder = MLP(self.embed_dim, list(cfg.time_hidden) + [width], act)
        self.x_encoder = MLP(dim, list(cfg.x_hidden) + [width], act)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:   # a batch of scalars (D = 1) or one point
            x = x.unsqueeze(-1) if self.dim == 1 else x.unsqueeze(0)
        if labels.dim() == 0:
            labels = labels.expand(x.shape[0])
        temb = self.t_encoder(layers.timestep_embedding(labels.reshape(-1), self.embed_dim))
        xemb = self.x_encoder(x)
        return self.net(torch.cat([xemb, temb], dim=-1))

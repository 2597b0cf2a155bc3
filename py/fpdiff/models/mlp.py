"""The toy score network of the high-order DSM paper (docs/maths.md §7.1).

ε̂ = net([x_encoder(x), t_encoder(emb(t))]) with a 64-dim sinusoidal embedding of the *raw time*
t ∈ [ε, 1] (not σ(t), not 999·t), encoders MLP[128,128] → 128, decoder MLP[512,512] → D and SiLU.
The network predicts ε̂ (trained so that ε̂ ≈ −z); the score is ε̂ / std(t) (``fpdiff.score``).
Parameter names follow the original toy (``t_encoder.layers.<i>``, ``x_encoder…``, ``net…``).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn as nn

from . import layers
from .initializers import init_device


class MLP(nn.Module):
    """Linear layers with an activation between them (none after the last)."""

    def __init__(self, input_dim: int, widths: Sequence[int], act: nn.Module):
        super().__init__()
        dims = [int(input_dim)] + [int(w) for w in widths]
        self.layers = nn.ModuleList(nn.Linear(a, b, device=init_device())
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


class ToyScoreMLP(nn.Module):
    """The toy score network; the defaults are the paper's (module docstring).

    Args:
        dim: data dimension D (input and output width).
        embed_dim: width of the sinusoidal embedding of t.
        time_hidden: hidden widths of the time encoder (its output has ``width`` units).
        x_hidden: hidden widths of the x encoder (its output has ``width`` units).
        width: output width of each encoder; the decoder reads their concatenation (2·width).
        hidden: hidden widths of the decoder (its output has ``dim`` units).
        nonlinearity: activation between layers ("swish" is SiLU).
        param: what the output means: "eps" (ε̂, score = ε̂ / std(t)) or "score". The network
            computes the same either way; ``fpdiff.score`` applies the parameterisation.
    """

    def __init__(
        self,
        *,
        dim: int,
        embed_dim: int = 64,
        time_hidden: Sequence[int] = (128, 128),
        x_hidden: Sequence[int] = (128, 128),
        width: int = 128,
        hidden: Sequence[int] = (512, 512),
        nonlinearity: Literal["swish", "relu", "elu", "tanh"] = "swish",
        param: Literal["eps", "score"] = "eps",
    ):
        super().__init__()
        if param not in ("eps", "score"):
            raise ValueError(f"param must be 'eps' or 'score'; got {param!r}")
        self.dim = dim = int(dim)
        self.embed_dim = int(embed_dim)
        self.param = param
        width = int(width)
        act = layers.get_act(nonlinearity)
        self.net = MLP(2 * width, list(hidden) + [dim], act)
        self.t_encoder = MLP(self.embed_dim, list(time_hidden) + [width], act)
        self.x_encoder = MLP(dim, list(x_hidden) + [width], act)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:   # a batch of scalars (D = 1) or one point
            x = x.unsqueeze(-1) if self.dim == 1 else x.unsqueeze(0)
        if labels.dim() == 0:
            labels = labels.expand(x.shape[0])
        temb = self.t_encoder(layers.timestep_embedding(labels.reshape(-1), self.embed_dim))
        xemb = self.x_encoder(x)
        return self.net(torch.cat([xemb, temb], dim=-1))

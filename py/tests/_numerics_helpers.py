"""Small networks and closed-form laws shared by the numerics tests (issue 4)."""

from __future__ import annotations

import torch
import torch.nn as nn

from fpdiff.score import ScoreModel
from fpdiff.sde import make_sde
from fpdiff import schema
from fpdiff.config import LossConfig, SubVPSDEConfig, VESDEConfig, VPSDEConfig
from fpdiff.toys import GaussianMixture

SDE_KINDS = ("ve", "vp", "subvp")


def wire_loss(*terms: dict) -> LossConfig:
    """Loss terms written as on the wire (camelCase JSON), read as the worker reads them."""
    return schema.parse("$defs/LossConfig", {"terms": list(terms)})


def sde_of(kind: str):
    return make_sde({"ve": VESDEConfig, "vp": VPSDEConfig, "subvp": SubVPSDEConfig}[kind]())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture(dim: int, k: int = 3, seed: int = 0, spread: float = 1.5) -> GaussianMixture:
    """A random diagonal-covariance mixture in `dim` dimensions (float64)."""
    g = gen(seed)
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    means = spread * torch.randn(k, dim, generator=g, dtype=torch.float64)
    var = 0.05 + 0.5 * torch.rand(k, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(w, means, var)


class TinyMLP(nn.Module):
    """x, label → output of x's shape; smooth (SiLU) so every derivative order exists."""

    def __init__(self, dim: int, hidden: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, torch.log1p(labels.abs())[:, None]], 1))


class TinyConv(nn.Module):
    """A small time-conditioned conv net on [B, C, H, W] (GroupNorm-free, so samples stay independent)."""

    def __init__(self, channels: int = 2, hidden: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(channels + 1, hidden, 3, padding=1)
        self.c2 = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lab = torch.log1p(labels.abs())[:, None, None, None].expand(x.shape[0], 1, *x.shape[2:])
        h = torch.nn.functional.silu(self.c1(torch.cat([x, lab], 1)))
        return self.c2(h)


class FunctionalMLP(ScoreModel):
    """A one-hidden-layer SiLU MLP whose weights are explicit tensors (for gradcheck)."""

    def __init__(self, sde, w1, b1, w2, b2):
        self.sde = sde
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, b2

    def score(self, x, t):
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        h = torch.nn.functional.silu(torch.cat([x, t[:, None]], 1) @ self.w1 + self.b1)
        return (h @ self.w2 + self.b2) / self.sde.marginal_std(t)[:, None]


def functional_weights(dim: int, hidden: int = 4, seed: int = 0):
    g = gen(seed)
    shapes = [(dim + 1, hidden), (hidden,), (hidden, dim), (dim,)]
    return [(0.5 * torch.randn(*s, generator=g, dtype=torch.float64)).requires_grad_(True) for s in shapes]

"""One-call shortcuts over `fpdiff.derivatives.ScoreDerivatives` for the tests: each builds a cache
for one (x, t) and returns one quantity (the numerics build the cache themselves)."""

from __future__ import annotations

from typing import Any

import torch

from fpdiff.derivatives import ScoreDerivatives, parse_dt
from fpdiff.score import ScoreModel

Tensor = torch.Tensor


def jvp(model: ScoreModel, x: Tensor, t: Tensor, v: Tensor, *, create_graph: bool = True) -> tuple[Tensor, Tensor]:
    """(s, J·v) by one forward-mode pass."""
    c = ScoreDerivatives(model, x, t, x_tangent=v.unsqueeze(0), create_graph=create_graph)
    return c.s, c.jv[0]


def dt_score(model: ScoreModel, x: Tensor, t: Tensor, mode: Any = "autodiff", *, t_min: float = 0.0,
             create_graph: bool = True) -> tuple[Tensor, Tensor]:
    """(s, ∂t s) by forward mode or the finite-difference stencil."""
    c = ScoreDerivatives(model, x, t, dt=parse_dt(mode), create_graph=create_graph, t_min=t_min)
    return c.s, c.dt_s


def jacobian(model: ScoreModel, x: Tensor, t: Tensor, *, create_graph: bool = True) -> Tensor:
    return ScoreDerivatives(model, x, t, x_grad=True, create_graph=create_graph).jacobian()


def divergence_exact(model: ScoreModel, x: Tensor, t: Tensor) -> Tensor:
    """∇·s = tr J through the cache's exact Jacobian."""
    return ScoreDerivatives(model, x, t, x_grad=True, create_graph=False).divergence_exact()


def grad_div(model: ScoreModel, x: Tensor, t: Tensor, *, create_graph: bool = True) -> Tensor:
    return ScoreDerivatives(model, x, t, x_grad=True, create_graph=create_graph).grad_div()

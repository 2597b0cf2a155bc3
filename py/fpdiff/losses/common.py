"""What the loss terms of one expression share: the draw (t, z, x_t) and the derivative passes.

A step goes: draw (t, z, x_t) once → every term declares what it needs (`Plan`) → one
`ScoreDerivatives` cache per evaluation point set is built with the union of those needs → every
term reads s, J·v, ∂t s, … from it. A term therefore never runs its own forward pass when another
term already needs the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..derivatives import FiniteDifference, ScoreDerivatives, sample_probes
from ..score import ScoreModel
from ..sde import SDE

Tensor = torch.Tensor

POINTS = ("pert", "x", "random")


@dataclass
class PointNeeds:
    """The union of what the terms need at one point set."""

    probes: tuple[str, int] | None = None  # (kind, k) evaluated by forward mode in the main pass
    dt: str | FiniteDifference | None = None
    x_grad: bool = False

    def merge_dt(self, dt: str | FiniteDifference) -> None:
        if self.dt is None or self.dt == dt:
            self.dt = dt
        elif dt == "autodiff":  # the exact one wins; a second estimator would need another pass
            self.dt = dt


@dataclass
class Plan:
    needs: dict[str, PointNeeds] = field(default_factory=dict)

    def at(self, points: str) -> PointNeeds:
        if points not in POINTS:
            raise ValueError(f"points must be one of {POINTS}, got {points!r}")
        return self.needs.setdefault(points, PointNeeds())


@dataclass
class LossBatch:
    """One draw shared by every term (docs/contracts.md §1)."""

    model: ScoreModel
    sde: SDE
    x0: Tensor
    t: Tensor
    z: Tensor
    xt: Tensor
    std: Tensor
    eps: float
    importance_sampling: bool
    generator: torch.Generator | None
    create_graph: bool = True
    derivs: dict[str, ScoreDerivatives] = field(default_factory=dict)
    probes: dict[str, tuple[str, Tensor]] = field(default_factory=dict)  # points -> (kind, [k,B,...])

    @property
    def dim(self) -> int:
        return self.x0[0].numel()

    def points(self, which: str) -> Tensor:
        if which == "pert":
            return self.xt
        if which == "x":
            return self.x0
        if which == "random":
            # FP-Diffusion's fp_dist='random': uniform in the batch's value range.
            lo, hi = self.x0.min(), self.x0.max()
            u = torch.rand(self.x0.shape, generator=self.generator, device=self.x0.device, dtype=self.x0.dtype)
            return lo + (hi - lo) * u
        raise ValueError(f"unknown points {which!r}")

    def build(self, plan: Plan) -> None:
        for which, need in plan.needs.items():
            x = self.points(which)
            probes = None
            if need.probes is not None:
                kind, k = need.probes
                probes = sample_probes(x, k, kind, self.generator)
                self.probes[which] = (kind, probes)
            self.derivs[which] = ScoreDerivatives(
                self.model, x, self.t, x_tangent=probes, dt=need.dt, x_grad=need.x_grad,
                create_graph=self.create_graph, t_min=self.eps,
            )
        if "pert" not in self.derivs:  # every expression has at least the score at x_t
            self.derivs["pert"] = ScoreDerivatives(self.model, self.xt, self.t, create_graph=self.create_graph)

    def at(self, which: str = "pert") -> ScoreDerivatives:
        return self.derivs[which]


def per_sample_mean(v: Tensor, lead: int = 1) -> Tensor:
    return v.reshape(*v.shape[:lead], -1).mean(-1)


def per_sample_sum(v: Tensor, lead: int = 1) -> Tensor:
    return v.reshape(*v.shape[:lead], -1).sum(-1)

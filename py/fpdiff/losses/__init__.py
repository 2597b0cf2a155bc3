"""Composable losses: a `LossExpression` is a sum of terms sharing one draw of (t, z, x_t).

    expr = build_loss([DSMTerm(weighting="likelihood"), ScoreFPETerm(mode="both", alpha=0.15, beta=0.01)])
    res = expr(score_model, x0, generator=g)
    res.total.backward(); log(res.log())

The DSM term (if any) decides how t is drawn (eps, importance sampling); without one,
t ~ U[1e-5, 1] (docs/contracts.md §1). Each term reports its parts unweighted in `terms`
("dsm", "high_order.frobenius", "high_order.trace", "high_order.third", "score_fpe.vector",
"score_fpe.scalar") and its weighted contribution to the total in `weighted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Union

import torch

from .. import config as C
from ..score import ScoreModel
from ..sde import SDE
from .common import LossBatch, Plan
from .dsm import DSMLoss
from .high_order import HighOrderLoss
from .score_fpe import ScoreFPELoss

Tensor = torch.Tensor

__all__ = ["DSMLoss", "HighOrderLoss", "ScoreFPELoss", "LossExpression", "LossResult", "LossBatch",
           "build_loss", "build_term"]

_CLASS = {C.DSMTerm: DSMLoss, C.HighOrderTerm: HighOrderLoss, C.ScoreFPETerm: ScoreFPELoss}
_LOG_NAME = {DSMLoss: "dsm", HighOrderLoss: "high_order", ScoreFPELoss: "score_fpe"}
Term = Union[DSMLoss, HighOrderLoss, ScoreFPELoss]


def build_term(spec: Union[C.LossTerm, Term]) -> Term:
    """One loss term from its config dataclass (a term object is returned as it is)."""
    if isinstance(spec, tuple(_LOG_NAME)):
        return spec
    return _CLASS[type(spec)](spec)


@dataclass
class LossResult:
    total: Tensor
    terms: dict[str, Tensor]
    weighted: dict[str, Tensor]
    t: Tensor

    def log(self) -> dict[str, float]:
        out = {"loss": float(self.total.detach())}
        out.update({k: float(v.detach()) for k, v in self.terms.items()})
        return out


class LossExpression:
    """A sum of loss terms evaluated on one shared draw (and shared derivative passes)."""

    def __init__(self, terms: Iterable[Any]):
        self.terms = [build_term(t) for t in terms]
        if not self.terms:
            raise ValueError("a loss expression needs at least one term")
        kinds = [_LOG_NAME[type(t)] for t in self.terms]
        if len(set(kinds)) < len(kinds):
            # one draw is shared and each term logs under its kind's name
            raise ValueError(f"a loss expression holds at most one term of each kind, got {kinds}")
        dsm = [t for t in self.terms if isinstance(t, DSMLoss)]
        self.dsm = dsm[0] if dsm else None

    @property
    def eps(self) -> float:
        return self.dsm.eps if self.dsm is not None else 1e-5

    @property
    def importance_sampling(self) -> bool:
        return bool(self.dsm is not None and self.dsm.importance_sampling)

    def draw(self, model: ScoreModel, x0: Tensor, *, generator: torch.Generator | None = None,
             t: Tensor | None = None, z: Tensor | None = None, create_graph: bool = True) -> LossBatch:
        sde: SDE = model.sde
        b = x0.shape[0]
        if t is None:
            if self.importance_sampling:
                t = sde.importance_sample_t(b, self.eps, generator=generator, device=x0.device, dtype=x0.dtype)
            else:
                u = torch.rand(b, generator=generator, device=x0.device, dtype=x0.dtype)
                t = self.eps + u * (sde.T - self.eps)
        if z is None:
            z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        mean, std = sde.marginal(x0, t)
        xt = mean + std.reshape(b, *([1] * (x0.dim() - 1))) * z
        batch = LossBatch(model=model, sde=sde, x0=x0, t=t, z=z, xt=xt, std=std, eps=self.eps,
                          importance_sampling=self.importance_sampling, generator=generator,
                          create_graph=create_graph)
        plan = Plan()
        for term in self.terms:
            term.plan(plan)
        batch.build(plan)
        return batch

    def evaluate(self, batch: LossBatch) -> LossResult:
        terms: dict[str, Tensor] = {}
        weighted: dict[str, Tensor] = {}
        total = None
        for term in self.terms:
            parts, contrib = term(batch)
            terms.update(parts)
            name = _LOG_NAME[type(term)]
            weighted[name] = weighted[name] + contrib if name in weighted else contrib
            total = contrib if total is None else total + contrib
        return LossResult(total=total, terms=terms, weighted=weighted, t=batch.t)  # type: ignore[arg-type]

    def __call__(self, model: ScoreModel, x0: Tensor, *, generator: torch.Generator | None = None,
                 t: Tensor | None = None, z: Tensor | None = None, create_graph: bool = True) -> LossResult:
        """Draw (t, z, x_t) once and evaluate every term on it."""
        return self.evaluate(self.draw(model, x0, generator=generator, t=t, z=z, create_graph=create_graph))

    def __repr__(self) -> str:
        return " + ".join(repr(t) for t in self.terms)


def build_loss(loss: Union[C.LossConfig, Iterable[Any], LossExpression]) -> LossExpression:
    """The experiment's loss (`LossConfig`), or a list of term configs / term objects, as one
    `LossExpression`: the only reader of the loss section."""
    if isinstance(loss, LossExpression):
        return loss
    return LossExpression(loss.terms if isinstance(loss, C.LossConfig) else loss)

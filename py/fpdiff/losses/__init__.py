"""Composable losses: a `LossExpression` is a sum of terms sharing one draw of (t, z, x_t).

    expr = build_loss([{"kind": "dsm", "weighting": "likelihood"},
                       {"kind": "scoreFpe", "mode": "both", "alpha": 0.15, "beta": 0.01}])
    res = expr(score_model, x0, generator=g)
    res.total.backward(); log(res.log())

The DSM term (if any) decides how t is drawn (eps, importance sampling); without one,
t ~ U[1e-5, 1] (docs/contracts.md §1). Each term reports its parts unweighted in `terms`
("dsm", "high_order.frobenius", "high_order.trace", "high_order.third", "score_fpe.vector",
"score_fpe.scalar") and its weighted contribution to the total in `weighted`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from ..score import ScoreModel
from ..sde import SDE
from .common import LossBatch, Plan, field_of
from .dsm import DSMLoss
from .high_order import HighOrderLoss
from .score_fpe import ScoreFPELoss

Tensor = torch.Tensor

__all__ = ["DSMLoss", "HighOrderLoss", "ScoreFPELoss", "LossExpression", "LossResult", "LossBatch",
           "build_loss", "build_term"]

_KIND = {
    "dsm": DSMLoss,
    "highOrder": HighOrderLoss, "high_order": HighOrderLoss,
    "scoreFpe": ScoreFPELoss, "score_fpe": ScoreFPELoss,
}
_ARGS = {
    DSMLoss: ("weighting", "importance_sampling", "reduce", "eps"),
    HighOrderLoss: ("order", "parts", "lambdas", "estimator", "probe", "n_probes"),
    ScoreFPELoss: ("mode", "alpha", "beta", "m", "weighting", "points", "dt", "div", "probe", "n_probes", "calibrate"),
}
_LOG_NAME = {DSMLoss: "dsm", HighOrderLoss: "high_order", ScoreFPELoss: "score_fpe"}


def build_term(spec: Any):
    """One loss term from a contracts.md §1 `LossTerm` (dataclass, object or snake/camelCase dict)."""
    if isinstance(spec, tuple(_ARGS)):
        return spec
    kind = field_of(spec, "kind")
    cls = _KIND.get(kind)
    if cls is None:
        raise ValueError(f"unknown loss term kind {kind!r}; expected dsm, highOrder or scoreFpe")
    kwargs = {}
    for name in _ARGS[cls]:
        value = field_of(spec, name, _MISSING)
        if value is not _MISSING and value is not None:
            kwargs[name] = value
    return cls(**kwargs)


_MISSING = object()


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
        dsm = [t for t in self.terms if isinstance(t, DSMLoss)]
        if len(dsm) > 1:
            raise ValueError("at most one dsm term per expression (it decides how t is drawn)")
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


def build_loss(terms: Any) -> LossExpression:
    """A `LossExpression` from a list of terms (dataclasses, dicts or term objects) or from a
    contracts.md `loss` object `{terms: [...]}`."""
    if isinstance(terms, LossExpression):
        return terms
    if isinstance(terms, Mapping) or (dataclasses.is_dataclass(terms) and hasattr(terms, "terms")):
        terms = field_of(terms, "terms")
    return LossExpression(terms)

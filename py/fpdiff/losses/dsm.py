"""First-order denoising score matching (Score SDE `losses.py`, docs/maths.md §4).

With x_t = mean(x_0, t) + std(t)·z:
  conventional: ℓ₁ = R(‖s·std + z‖²)
  likelihood:   ℓ₁ = R(‖s + z/std‖²)·g(t)²   (Song et al. 2021b, Thm. 1 weighting)
  likelihood + importance sampling: t ~ p(t) ∝ g²/std² and ℓ₁ = R(‖s·std + z‖²)
R = mean over the D dimensions (`reduce="mean"`) or ½·sum (`reduce="sum"`); the loss is the mean
over the batch. As in score_flow / mle_score_ode, the importance-sampled loss is not multiplied by
the proposal's normaliser Z (a constant factor, `SDE.importance_norm`).
"""

from __future__ import annotations

import torch

from ..config import DSMTerm

from ..sde import bcast
from .common import LossBatch, Plan, per_sample_mean, per_sample_sum

Tensor = torch.Tensor

class DSMLoss:
    """ℓ₁ of docs/maths.md §4.1, configured by the experiment's `dsm` loss term (docs/contracts.md §1)."""

    kind = "dsm"

    def __init__(self, cfg: DSMTerm = DSMTerm()):
        if cfg.importance_sampling and cfg.weighting != "likelihood":
            # the importance density only stands in for the likelihood weight
            raise ValueError("importance_sampling only applies with weighting='likelihood'")
        self.weighting = cfg.weighting
        self.importance_sampling = cfg.importance_sampling
        self.reduce = cfg.reduce
        self.eps = cfg.eps

    def _r(self, sq: Tensor) -> Tensor:
        return per_sample_mean(sq) if self.reduce == "mean" else 0.5 * per_sample_sum(sq)

    def plan(self, plan: Plan) -> None:
        plan.at("pert")

    def per_sample(self, batch: LossBatch) -> Tensor:
        s = batch.at("pert").s
        std = bcast(batch.std, s)
        if self.weighting == "conventional" or self.importance_sampling:
            return self._r((s * std + batch.z) ** 2)
        return self._r((s + batch.z / std) ** 2) * batch.sde.g2(batch.t)

    def __call__(self, batch: LossBatch) -> tuple[dict[str, Tensor], Tensor]:
        loss = self.per_sample(batch).mean()
        return {"dsm": loss}, loss

    def __repr__(self) -> str:
        return (f"DSMLoss(weighting={self.weighting!r}, importance_sampling={self.importance_sampling}, "
                f"reduce={self.reduce!r}, eps={self.eps})")

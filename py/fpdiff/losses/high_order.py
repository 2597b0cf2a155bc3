"""Error-bounded second- and third-order DSM (Lu et al., ICML 2022, §4; docs/maths.md §6).

With σ = std(t), c = z + σ·sg(s) (sg = stop-gradient), J = ∂s/∂x and A = σ²J + I − ccᵀ
(E[A | x_t] = 0 for the true first- and second-order scores):

exact form (small D; mle_score_ode `toy.py`, written in the score s = ε̂/σ):
  frobenius  ℓ₂ = mean over D² of A²                          = ‖A‖²_F / D²
  trace      ℓ₂ = (tr A)² / D = (σ²∇·s + D − ‖c‖²)² / D
  third      ℓ₃ = mean_D (σ³∇(∇·s) + ‖c‖²c − (σ²·sg(∇·s) + D)c − 2(σ²·sg(J) + I)c)²

Hutchinson form (images; mle_score_ode `losses.py`, one probe v, J·v by forward mode):
  frobenius  ℓ₂ = mean_D (A v)² / D                            (E_v = ‖A‖²_F / D², as exact)
  trace      ℓ₂ = (vᵀA v / D)²
  third      ℓ₃ = mean_D (σ³∇x⟨v,Jv⟩ + ⟨c,v⟩²c − (σ²·sg⟨v,Jv⟩ + ‖v‖²)c − 2⟨v,c⟩(σ²·sg(Jv) + v))² / D²

Both forms follow their original code, normalisation included, so the published weights carry
over (toy: ℓ₁ + 0.5·ℓ₂ + 0.1·ℓ₃ with the Frobenius ℓ₂; CIFAR-10: unit weights, Frobenius + trace).
The Frobenius part has the same expectation in both forms. The trace and third-order residuals
are unbiased for their exact counterparts before squaring, but their normalisations differ: the
exact trace part is D·(tr A / D)² and the exact third part D²·‖R₃‖²/D³ relative to the
Hutchinson ones, and squaring a Hutchinson estimate adds its variance. Both forms are minimised
by the true higher-order scores (tests check this on Gaussian data).
"""

from __future__ import annotations


import torch

from ..derivatives import sample_inner, sample_sqnorm
from ..config import HighOrderTerm
from ..sde import bcast
from .common import LossBatch, Plan

Tensor = torch.Tensor

PARTS = ("frobenius", "trace")


class HighOrderLoss:
    """ℓ₂ (and ℓ₃ for order 3) of docs/maths.md §6; add a `DSMLoss` for ℓ₁ (the presets do).

    Configured by the experiment's `highOrder` loss term (docs/contracts.md §1); `n_probes`
    (default 1, as the original) averages the Hutchinson form over several probes.
    """

    kind = "highOrder"

    def __init__(self, cfg: HighOrderTerm, n_probes: int = 1):
        self.order = cfg.order
        self.parts = tuple(dict.fromkeys(cfg.parts))  # a repeated part would count twice
        self.second = cfg.lambdas.second
        self.third = cfg.lambdas.third
        self.estimator = cfg.estimator
        self.probe = cfg.probe
        self.n_probes = int(n_probes)

    def plan(self, plan: Plan) -> None:
        need = plan.at("pert")
        need.x_grad = True
        if self.estimator == "hutchinson":
            need.probes = (self.probe, self.n_probes)

    def __call__(self, batch: LossBatch) -> tuple[dict[str, Tensor], Tensor]:
        if self.estimator == "exact":
            parts = self._exact(batch)
        else:
            parts = self._hutchinson(batch)
        total = self.second * sum(parts[f"high_order.{p}"] for p in self.parts)
        if self.order == 3:
            total = total + self.third * parts["high_order.third"]
        return parts, total

    # --- exact form ----------------------------------------------------------------------------
    def _exact(self, batch: LossBatch) -> dict[str, Tensor]:
        der = batch.at("pert")
        s = der.s
        b = s.shape[0]
        d = batch.dim
        sig = batch.std.reshape(b)
        c = (batch.z + bcast(batch.std, s) * s.detach()).reshape(b, d)
        jac = der.jacobian()  # [B, D, D]
        eye = torch.eye(d, dtype=s.dtype, device=s.device)
        out: dict[str, Tensor] = {}
        a_mat = sig[:, None, None] ** 2 * jac + eye - c[:, :, None] * c[:, None, :]
        if "frobenius" in self.parts:
            out["high_order.frobenius"] = a_mat.pow(2).mean((1, 2)).mean()
        if "trace" in self.parts:
            tr = a_mat.diagonal(dim1=1, dim2=2).sum(-1)
            out["high_order.trace"] = (tr.pow(2) / d).mean()
        if self.order == 3:
            div = jac.diagonal(dim1=1, dim2=2).sum(-1)
            gdiv = der.grad_x(div).reshape(b, d)
            c2 = c.pow(2).sum(-1, keepdim=True)
            sg_jac = jac.detach()
            jc = torch.einsum("bij,bj->bi", sig[:, None, None] ** 2 * sg_jac, c) + c
            r3 = (sig[:, None] ** 3 * gdiv + c2 * c
                  - (sig[:, None] ** 2 * div.detach()[:, None] + d) * c - 2 * jc)
            out["high_order.third"] = r3.pow(2).mean(-1).mean()
        return out

    # --- Hutchinson form -----------------------------------------------------------------------
    def _hutchinson(self, batch: LossBatch) -> dict[str, Tensor]:
        der = batch.at("pert")
        s = der.s
        b = s.shape[0]
        d = batch.dim
        v = der.x_tangent.reshape(-1, b, d)  # type: ignore[union-attr]
        jv = der.jv.reshape(-1, b, d)
        sig = batch.std.reshape(1, b, 1)
        c = (batch.z + bcast(batch.std, s) * s.detach()).reshape(1, b, d)
        cv = sample_inner(c, v, lead=2)[..., None]  # [k,B,1]
        vv = sample_sqnorm(v, lead=2)[..., None]
        vjv = sample_inner(v, jv, lead=2)[..., None]
        out: dict[str, Tensor] = {}
        if "frobenius" in self.parts:
            frob = sig**2 * jv + v - cv * c
            out["high_order.frobenius"] = (frob.pow(2) / d).mean(-1).mean()
        if "trace" in self.parts:
            tr = (sig**2 * vjv + vv - cv**2) / d
            out["high_order.trace"] = tr.pow(2).mean()
        if self.order == 3:
            gvjv = der.grad_x_probes(vjv[..., 0]).reshape(-1, b, d)
            r3 = (sig**3 * gvjv + cv**2 * c - (sig**2 * vjv.detach() + vv) * c
                  - 2 * cv * (sig**2 * jv.detach() + v))
            out["high_order.third"] = (r3 / d).pow(2).mean(-1).mean()
        return out

    def __repr__(self) -> str:
        return (f"HighOrderLoss(order={self.order}, parts={self.parts}, lambdas={{'second': {self.second}, "
                f"'third': {self.third}}}, estimator={self.estimator!r}, probe={self.probe!r})")

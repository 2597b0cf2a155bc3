"""The score Fokker–Planck regulariser of FP-Diffusion (Lai et al., ICML 2023, §3–4; docs/maths.md §5).

For dx = f dt + g dw the true score obeys  ∂t s = ∇x φ,  φ = (g²/2)(∇·s + ‖s‖²) − ⟨f, s⟩ − ∇·f.
The residual r = ∂t s − ∇x φ is penalised at points y (`points`: the DSM's x_t, the clean data,
or uniform in the batch's range) at the DSM's t:

  vector = mean_b w(t)·‖r‖₂^m / D^m,   w = 1 | g | g²   (`weighting` constant | convention | ll)
  scalar = ‖ φ̃ ‖₂ over the batch,  φ̃ = (g²/2)(∇·s + ‖s‖²) − ⟨f, s⟩   (as the reference computes it:
           not a residual; ∇·f is dropped because it does not depend on the model)
  L += α·vector (mode "vector"), β·scalar ("scalar"), or both ("both").

With ``calibrate`` (dimension-free weights, docs/score-fpe-scale.md) α and β are set once at the
start of training so that α·vector and β·scalar are given shares of L (`calibrated_weights`;
the measurement and its record in the run directory are in ``losses/calibration.py``).

∂t s comes from one forward-mode pass (exact) or the reference's three-point stencil; ∇·s is
the exact trace (small D) or a Hutchinson estimate (images, [B, C, H, W] as well); ∇x φ is one
reverse pass over the same graph. VE, VP and subVP all use this one formula (f = ċ(t)x), so
subVP — which the reference cannot build — needs no special case.

Departures from the reference (sony/fp-diffusion 68d61e0), all deliberate:
- subVP is supported; 'scalar' / 'vector' / 'both', weighting and m are honoured (the reference's
  `get_step_fn` hard-codes 'both', 'll', m = 2);
- the stencil never leaves the time domain: where t − hs < eps it switches to one-sided nodes
  (the reference evaluates s at t − 1e-3 and returns NaN for VP when t < 1e-3);
- the VE scalar term is the same φ̃ as for VP (the reference's VE 'both' branch uses an undefined
  attribute), and nothing is printed.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from .._generated import types as T
from ..config import ScoreFPETerm
from ..derivatives import ScoreDerivatives, parse_dt, sample_probes, sample_sqnorm
from ..score import ScoreModel
from ..sde import SDE
from .common import POINTS, LossBatch, Plan

Tensor = torch.Tensor

MODES = ("scalar", "vector", "both")
WEIGHTINGS = ("constant", "convention", "ll")


def fpe_potential(sde: SDE, der: ScoreDerivatives, div: Tensor) -> Tensor:
    """φ̃ = (g²/2)(∇·s + ‖s‖²) − ⟨f, s⟩ per sample [B], given ∇·s (exact or estimated)."""
    s, t = der.s, der.t
    f_s = sde.log_mean_coef_dt(t) * (der.x * s).reshape(s.shape[0], -1).sum(-1)
    return 0.5 * sde.g2(t) * (div + sample_sqnorm(s)) - f_s


def fpe_residual(
    model: ScoreModel, x: Tensor, t: Tensor, *, div: str = "exact", dt: Any = "autodiff",
    probes: Tensor | None = None, create_graph: bool = False, t_min: float = 0.0,
) -> dict[str, Tensor]:
    """The score-FPE residual r = ∂t s − ∇x φ̃ at (x, t) and its parts (lhs = ∂t s, rhs = ∇x φ̃,
    phi = φ̃), each shaped like x (phi [B]). Hutchinson divergence needs `probes` [k, B, ...]."""
    der = ScoreDerivatives(model, x, t, dt=dt, x_grad=True, create_graph=create_graph, t_min=t_min)
    if div == "exact":
        d = der.divergence_exact()
    elif probes is None:
        raise ValueError("Hutchinson divergence needs probes")
    else:
        d = der.divergence_hutchinson(probes)
    phi = fpe_potential(model.sde, der, d)
    rhs = der.grad_x(phi)
    lhs = der.dt_s
    return {"residual": lhs - rhs, "lhs": lhs, "rhs": rhs, "phi": phi}


def checked_calibration(cal: Optional[T.ScoreFPETermCalibrate]) -> Optional[T.ScoreFPETermCalibrate]:
    """The term's ``calibrate`` (zod-generated), refused here too where the weights are computed:
    at least one share, each in (0, 1), summing below 1."""
    if cal is None:
        return None
    shares = [v for v in (cal.vector_share, cal.scalar_share) if v is not None]
    if not shares:
        raise ValueError("calibrate needs vectorShare and/or scalarShare")
    if any(not 0 < v < 1 for v in shares) or sum(shares) >= 1:
        raise ValueError(f"calibrate shares must lie in (0, 1) and sum below 1, got {shares}")
    if cal.batches < 1:
        raise ValueError(f"calibrate.batches must be positive, got {cal.batches}")
    return cal


def calibrated_weights(cal: T.ScoreFPETermCalibrate, *, rest: float, vector: float, scalar: float,
                       alpha: float, beta: float, mode: str) -> tuple[float, float]:
    """α, β such that α·vector and β·scalar are the shares a, b of L = rest + α·vector + β·scalar.

    With both shares: L = rest / (1 − a − b); with one, the other term keeps its weight and
    L = (rest + fixed term) / (1 − share). Inputs are mean unweighted values over the same draws."""
    a = cal.vector_share if mode in ("vector", "both") else None
    b = cal.scalar_share if mode in ("scalar", "both") else None
    fixed = 0.0
    if mode in ("vector", "both") and a is None:
        fixed += alpha * vector
    if mode in ("scalar", "both") and b is None:
        fixed += beta * scalar
    if not (math.isfinite(rest) and rest > 0):
        raise ValueError(f"score-FPE calibration: the rest of the loss is {rest}; a share needs a positive dsm/highOrder loss")
    total = (rest + fixed) / (1.0 - (a or 0.0) - (b or 0.0))
    if a is not None:
        if not (math.isfinite(vector) and vector > 0):
            raise ValueError(f"score-FPE calibration: the vector term is {vector}; cannot give it a share")
        alpha = a * total / vector
    if b is not None:
        if not (math.isfinite(scalar) and scalar > 0):
            raise ValueError(f"score-FPE calibration: the scalar term is {scalar}; cannot give it a share")
        beta = b * total / scalar
    return alpha, beta


class ScoreFPELoss:
    """docs/maths.md §5.2 regulariser, configured by the experiment's `scoreFpe` loss term
    (docs/contracts.md §1); `probe` picks the Hutchinson probe (the reference uses one Gaussian probe)."""

    kind = "scoreFpe"

    def __init__(self, cfg: ScoreFPETerm = ScoreFPETerm(), n_probes: int = 1):
        self.mode = cfg.mode
        self.alpha = cfg.alpha
        self.beta = cfg.beta
        self.m = cfg.m
        self.weighting = cfg.weighting
        self.points = cfg.points
        self.dt = parse_dt(cfg.dt)
        self.div = cfg.div
        self.probe = cfg.probe
        self.n_probes = int(n_probes)
        # guarded here (zod refuses it first): a share of a term the mode does not have
        self.calibrate = checked_calibration(cfg.calibrate)
        if self.calibrate is not None:
            if self.calibrate.vector_share is not None and not self.needs_vector:
                raise ValueError(f"calibrate.vectorShare: mode {self.mode!r} has no vector term")
            if self.calibrate.scalar_share is not None and self.mode == "vector":
                raise ValueError("calibrate.scalarShare: mode 'vector' has no scalar term")

    @property
    def needs_vector(self) -> bool:
        return self.mode in ("vector", "both")

    def plan(self, plan: Plan) -> None:
        need = plan.at(self.points)
        need.x_grad = True
        if self.needs_vector:
            need.merge_dt(self.dt)

    def _divergence(self, batch: LossBatch) -> Tensor:
        der = batch.at(self.points)
        if self.div == "exact":
            return der.divergence_exact()
        shared = batch.probes.get(self.points)
        if shared is not None and shared[0] == self.probe and der.x_tangent is shared[1]:
            return der.divergence_hutchinson()  # reuse the forward-mode J·v of another term
        v = sample_probes(der.x, self.n_probes, self.probe, batch.generator)
        return der.divergence_hutchinson(v)

    def potential(self, batch: LossBatch) -> Tensor:
        """φ̃ = (g²/2)(∇·s + ‖s‖²) − ⟨f, s⟩ per sample, [B]."""
        return fpe_potential(batch.sde, batch.at(self.points), self._divergence(batch))

    def residual(self, batch: LossBatch, phi: Tensor | None = None) -> Tensor:
        """r = ∂t s − ∇x φ, shaped like x."""
        der = batch.at(self.points)
        if phi is None:
            phi = self.potential(batch)
        return der.dt_s - der.grad_x(phi)

    def _weight(self, batch: LossBatch) -> Tensor:
        g2 = batch.sde.g2(batch.t)
        if self.weighting == "ll":
            return g2
        if self.weighting == "convention":
            return torch.sqrt(g2)
        return torch.ones_like(g2)

    def __call__(self, batch: LossBatch) -> tuple[dict[str, Tensor], Tensor]:
        phi = self.potential(batch)
        out: dict[str, Tensor] = {}
        total = phi.new_zeros(())
        d = batch.dim
        if self.needs_vector:
            r = self.residual(batch, phi)
            sq = sample_sqnorm(r)
            # ‖r‖^m through ‖r‖² so that m = 2 has no square root (finite gradient at r = 0)
            norm_m = sq if self.m == 2 else sq.clamp_min(1e-30) ** (self.m / 2)
            vec = (self._weight(batch) * norm_m).mean() / d**self.m
            out["score_fpe.vector"] = vec
            total = total + self.alpha * vec
        if self.mode in ("scalar", "both"):
            sca = torch.sqrt(phi.pow(2).sum())
            out["score_fpe.scalar"] = sca
            total = total + self.beta * sca
        return out, total

    def __repr__(self) -> str:
        cal = "" if self.calibrate is None else f", calibrate={self.calibrate!r}"
        return (f"ScoreFPELoss(mode={self.mode!r}, alpha={self.alpha}, beta={self.beta}, m={self.m}, "
                f"weighting={self.weighting!r}, points={self.points!r}, dt={self.dt!r}, div={self.div!r}{cal})")

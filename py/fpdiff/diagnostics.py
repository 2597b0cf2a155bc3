"""Diagnostics of a score model along t.

- `fpe_residual_curve`: the score-FPE residual ‖∂t s − ∇x φ̃‖ as a function of t at perturbed data
  points (FP-Diffusion, Lai et al. 2023, Fig. 1/3: a learned score violates the score FPE most at
  small t).
- `ode_score` and `fisher_curve`: the ScoreODE's own score ∇x log p_t^ODE and its weighted Fisher
  divergence to the data score, E_{q_t}[g(t)² ‖∇log p_t^ODE − ∇log q_t‖²] (Lu et al. 2022, Fig. 3;
  the quantity whose time integral bounds KL(q_0‖p_0^ODE), their Thm. 4.1). The ODE score is the
  solution of the instantaneous change of score (their Appendix D): along a trajectory of
  dx/dτ = h(x, τ) = f − ½g²s, the score ξ(τ) = ∇x log p_τ(x_τ) obeys

      dξ/dτ = −∇x(∇·h) − (∇x h)ᵀ ξ = ½g²∇x(∇·s) − ċ ξ + ½g² Jᵀξ,

  integrated from ξ(T) = ∇ log p_T(x_T) back to t. mle_score_ode's toy.py multiplies ξ by J
  instead of Jᵀ (identical in 1-D, and for the symmetric Jacobian of a true score); this follows
  the derivation (Jᵀ).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .derivatives import ScoreDerivatives, sample_probes, sample_sqnorm
from .losses.score_fpe import fpe_residual
from .score import ScoreModel
from .sde import bcast

Tensor = torch.Tensor


def _times(ts: Sequence[float] | Tensor) -> list[float]:
    return [float(v) for v in (ts.tolist() if isinstance(ts, Tensor) else ts)]


def fpe_residual_curve(
    model: ScoreModel,
    x0: Tensor,
    ts: Sequence[float] | Tensor,
    *,
    div: str = "exact",
    dt: Any = "autodiff",
    points: str = "pert",
    probe: str = "rademacher",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Per t: mean ‖r‖ (residual), mean ‖∂t s‖ (lhs), mean ‖∇φ̃‖ (rhs), their ratio
    (relative = mean‖r‖ / mean‖∇φ̃‖) and the regulariser's per-dim form mean ‖r‖²/D²."""
    times = _times(ts)
    d = x0[0].numel()
    out: dict[str, list[float]] = {"t": [], "residual": [], "lhs": [], "rhs": [], "relative": [], "per_dim_sq": []}
    for i, tv in enumerate(times):
        t = torch.full((x0.shape[0],), tv, dtype=x0.dtype, device=x0.device)
        if points == "pert":
            z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            x = model.sde.perturb(x0, t, z)
        elif points == "x":
            x = x0
        else:
            raise ValueError("points must be 'pert' or 'x'")
        probes = sample_probes(x, n_probes, probe, generator) if div == "hutchinson" else None
        parts = fpe_residual(model, x, t, div=div, dt=dt, probes=probes, create_graph=False)
        r = sample_sqnorm(parts["residual"].detach())
        lhs = sample_sqnorm(parts["lhs"].detach()).sqrt().mean()
        rhs = sample_sqnorm(parts["rhs"].detach()).sqrt().mean()
        res = r.sqrt().mean()
        out["t"].append(tv)
        out["residual"].append(float(res))
        out["lhs"].append(float(lhs))
        out["rhs"].append(float(rhs))
        out["relative"].append(float(res / rhs.clamp_min(1e-30)))
        out["per_dim_sq"].append(float(r.mean() / d**2))
        if callback is not None:
            callback(i + 1, len(times))
    return out


def _score_ode_rhs(model: ScoreModel, x: Tensor, t: Tensor, xi: Tensor) -> tuple[Tensor, Tensor]:
    """(h(x,t), dξ/dτ) for the instantaneous change of score, exact derivatives (small D)."""
    sde = model.sde
    with torch.enable_grad():
        der = ScoreDerivatives(model, x, t, x_grad=True, create_graph=True)
        s = der.s
        gdiv = der.grad_div()
        jt_xi = torch.autograd.grad(s, der.x, grad_outputs=xi, retain_graph=False)[0]
    g2 = bcast(sde.g2(t), x)
    cdot = bcast(sde.log_mean_coef_dt(t), x)
    h = sde.ode_drift(x, t, s.detach())
    dxi = 0.5 * g2 * gdiv.detach() - cdot * xi + 0.5 * g2 * jt_xi.detach()
    return h, dxi


def ode_score(
    model: ScoreModel,
    x: Tensor,
    t: float,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    prior_score: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """∇x log p_t^ODE(x): the score of the marginal the model's probability-flow ODE defines
    (prior at T pushed back to t), by the instantaneous change of score (Lu et al. 2022, App. D)."""
    from torchdiffeq import odeint

    sde = model.sde
    b = x.shape[0]

    def fwd(tau: Tensor, xs: Tensor) -> Tensor:
        vt = tau.expand(b).to(xs.dtype)
        return sde.ode_drift(xs, vt, model.score(xs, vt))

    def bwd(tau: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        vt = tau.expand(b).to(state[0].dtype)
        return _score_ode_rhs(model, state[0], vt, state[1])

    with torch.no_grad():
        ts = torch.tensor([t, sde.T], dtype=x.dtype, device=x.device)
        x_T = odeint(fwd, x, ts, rtol=rtol, atol=atol, method=method)[-1]
        xi_T = (prior_score or sde.prior_score)(x_T)
        _, xis = odeint(bwd, (x_T, xi_T), ts.flip(0), rtol=rtol, atol=atol, method=method)
    return xis[-1]


def fisher_curve(
    model: ScoreModel,
    data_score: ScoreModel,
    x0: Tensor,
    ts: Sequence[float] | Tensor,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    generator: torch.Generator | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Per t, at x_t ~ q_t (x0 perturbed by the SDE): the weighted Fisher divergences
    `fisher_ode` = E[g²‖s_ode − s_q‖²], `fisher_model` = E[g²‖s_θ − s_q‖²] (score-matching error),
    `ode_vs_model` = E[g²‖s_ode − s_θ‖²], with s_q the data score (`data_score`, e.g. a
    `toys.MixtureScore`) and s_ode = `ode_score(model)`."""
    times = _times(ts)
    sde = model.sde
    out: dict[str, list[float]] = {"t": [], "fisher_ode": [], "fisher_model": [], "ode_vs_model": []}
    for i, tv in enumerate(times):
        t = torch.full((x0.shape[0],), tv, dtype=x0.dtype, device=x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        xt = sde.perturb(x0, t, z)
        g2 = sde.g2(t)
        with torch.no_grad():
            s_q = data_score.score(xt, t)
            s_m = model.score(xt, t)
        s_o = ode_score(model, xt, tv, rtol=rtol, atol=atol, method=method)
        out["t"].append(tv)
        out["fisher_ode"].append(float((g2 * sample_sqnorm(s_o - s_q)).mean()))
        out["fisher_model"].append(float((g2 * sample_sqnorm(s_m - s_q)).mean()))
        out["ode_vs_model"].append(float((g2 * sample_sqnorm(s_o - s_m)).mean()))
        if callback is not None:
            callback(i + 1, len(times))
    return out

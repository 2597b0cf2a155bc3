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

import math
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

    if t >= sde.T:  # nothing to integrate: the ODE's marginal at T is its prior
        return (prior_score or sde.prior_score)(x)
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
    ode: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    prior_score: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Per t, at x_t ~ q_t (x0 perturbed by the SDE), with s_q the data score (`data_score`, e.g. a
    `toys.LawScore`), s_θ the model's and s_ode = `ode_score(model)`:

    - `fisher_model` = E[g²‖s_θ − s_q‖²], the score-matching error (weighted Fisher divergence);
    - `sigma_score` = E‖std·s_θ‖ and `sigma_score_true` = E‖std·s_q‖ (a score collapsing to 0
      shows here; for the truth E‖std·s_q‖² → D at large t);
    - with `ode`: `fisher_ode` = E[g²‖s_ode − s_q‖²] (Lu et al. 2022, Thm 4.1's integrand scale)
      and `ode_vs_model` = E[g²‖s_ode − s_θ‖²]; `prior_score` replaces the prior's at T."""
    times = _times(ts)
    sde = model.sde
    keys = ["t", "fisher_model", "sigma_score", "sigma_score_true"] + (["fisher_ode", "ode_vs_model"] if ode else [])
    out: dict[str, list[float]] = {k: [] for k in keys}
    for i, tv in enumerate(times):
        t = torch.full((x0.shape[0],), tv, dtype=x0.dtype, device=x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        xt = sde.perturb(x0, t, z)
        g2 = sde.g2(t)
        std = bcast(sde.marginal_std(t), xt)
        with torch.no_grad():
            s_q = data_score.score(xt, t)
            s_m = model.score(xt, t)
        out["t"].append(tv)
        out["fisher_model"].append(float((g2 * sample_sqnorm(s_m - s_q)).mean()))
        out["sigma_score"].append(float(sample_sqnorm(std * s_m).sqrt().mean()))
        out["sigma_score_true"].append(float(sample_sqnorm(std * s_q).sqrt().mean()))
        if ode:
            s_o = ode_score(model, xt, tv, rtol=rtol, atol=atol, method=method, prior_score=prior_score)
            out["fisher_ode"].append(float((g2 * sample_sqnorm(s_o - s_q)).mean()))
            out["ode_vs_model"].append(float((g2 * sample_sqnorm(s_o - s_m)).mean()))
        if callback is not None:
            callback(i + 1, len(times))
    return out


# ---------------------------------------------------------------------------------------------
# The toy job's per-model measurements


def ode_nll(
    model: ScoreModel,
    x: Tensor,
    *,
    eps: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    steps: int = 100,
    batch_size: int | None = None,
    callback: Callable[[int, "int | None"], None] | None = None,
) -> tuple[Tensor, int, list[str]]:
    """−log p_ε^ODE(x) per point [N] (nats) by the probability-flow ODE with the exact divergence
    (Song et al. 2021, App. D.2), solved in batches of `batch_size` (default: all at once); the
    total function evaluations and the solvers that answered (a fallback names itself).
    `steps` applies to the fixed-step solvers (step (1 − ε)/steps)."""
    from .likelihood import ode_likelihood

    options = None if method == "dopri5" else {"step_size": (1.0 - eps) / steps}
    bs = batch_size or x.shape[0]
    out, nfe, solvers = [], 0, []
    for i in range(0, x.shape[0], bs):
        res = ode_likelihood(model, x[i:i + bs], eps=eps, rtol=rtol, atol=atol, method=method, divergence="exact",
                             options=options, callback=callback)
        out.append(-res.logp.detach())
        nfe += res.nfe
        if res.solver not in solvers:
            solvers.append(res.solver)
    return torch.cat(out), nfe, solvers


def toy_nll(
    model: ScoreModel,
    dataset: str,
    n: int,
    *,
    seed: int = 1,
    dim: int | None = None,
    scale: float | None = None,
    device: Any = "cpu",
    **ode: Any,
) -> dict[str, Any]:
    """The ScoreODE's NLL (nats) of n fresh test points of a toy data set (`toys.test_points`:
    the same points for every model given the same seed) beside the data's entropy floor:
    {per_sample [n] float64, nll, stderr, floor, floor_method, nfe, solvers}. `ode`: `ode_nll`'s
    keyword arguments."""
    from . import toys

    x = toys.test_points(dataset, n, seed=seed, dim=dim, scale=scale).to(device)
    per, nfe, solvers = ode_nll(model, x, **ode)
    per = per.double().cpu()
    floor, how = toys.entropy_floor(dataset, dim, scale)
    return {"per_sample": per, "nll": float(per.mean()),
            "stderr": float(per.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0,
            "floor": floor, "floor_method": how, "nfe": nfe, "solvers": solvers}


def toy_density(
    model: ScoreModel,
    dataset: str,
    n: int,
    *,
    dim: int | None = None,
    scale: float | None = None,
    lo: Sequence[float] | None = None,
    hi: Sequence[float] | None = None,
    truth: bool = True,
    device: Any = "cpu",
    **ode: Any,
) -> dict[str, Any]:
    """log p_ε^ODE on a 1-D / 2-D grid of ≈ n cells per axis (`toys.density_grid`), the true
    log q_0 there, and — where the law has a bounded support (the checkerboard) — the mass the
    model's density puts on it (`mass_on_support`): {axes, logp (image shape), true_logp | None,
    mass_on_support | None, mass_in_grid, nfe, solvers}."""
    from . import toys

    axes = toys.density_grid(dataset, n, dim=dim, scale=scale, lo=lo, hi=hi)
    pts = toys.grid_points(axes)
    shape = tuple(a.numel() for a in reversed(axes))  # [ny, nx] or [nx]
    per, nfe, solvers = ode_nll(model, pts.to(device=device, dtype=torch.float32), **ode)
    logp = (-per).double().cpu()
    law = toys.toy_law(dataset, dim, scale)
    true = toys.true_log_prob(dataset, pts, dim, scale) if truth else None
    mass = mass_on_support(law, axes, logp) if law is not None and hasattr(law, "support_fraction") else None
    vol = toys.cell_bounds(axes)[2]
    return {
        "axes": axes,
        "logp": logp.reshape(shape),
        "true_logp": true.reshape(shape) if true is not None else None,
        "mass_on_support": mass["mass_on_support"] if mass else None,
        "mass_in_grid": float((logp.exp() * vol).sum()),
        "nfe": nfe,
        "solvers": solvers,
    }


def mass_on_support(law: Any, axes: Sequence[Tensor], logp: Tensor) -> dict[str, float]:
    """The mass a density puts on the data law's support, from its log-density on a grid
    (`toys.density_grid` cell centres, `logp` in the `toys.grid_points` order or image shape):
    Σ_cells exp(logp)·|cell|·share of the cell on the support, and the grid's total mass
    Σ exp(logp)·|cell|. For the checkerboard uniform noise on [−4, 4]² scores 0.5, the data 1.
    Needs `law.support_fraction(lo, hi)` (the checkerboard's)."""
    from .toys import cell_bounds

    lo, hi, vol = cell_bounds(axes)
    p = logp.reshape(-1).double().exp() * vol
    share = law.support_fraction(lo, hi)
    return {"mass_on_support": float((p * share).sum()), "mass_in_grid": float(p.sum())}


def toy_mechanism(
    model: ScoreModel,
    law: Any,
    x0: Tensor,
    ts: Sequence[float] | Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int], None] | None = None,
    **fisher: Any,
) -> dict[str, list[float]]:
    """The curves along t that show why a toy model's ODE likelihood is what it is: the absolute
    score-FPE residual E‖∂t s − ∇x φ̃‖ beside E‖∂t s‖ and E‖∇x φ̃‖ (exact divergence, autodiff ∂t);
    and, where the data law `law` is closed-form, `fisher_curve`'s: E‖std·s‖ beside the truth's,
    the score error E[g²‖s_θ − s_q‖²] and (with `ode`) the ScoreODE's own Fisher divergence
    E[g²‖s_ode − s_q‖²], started at T from the SDE's prior as the model's ScoreODE is. `fisher`:
    `fisher_curve`'s settings (ode, rtol, atol, method, prior_score)."""
    times = _times(ts)
    n = len(times) * (2 if law is not None else 1)

    def tick(offset: int) -> Callable[[int, int], None]:
        return lambda i, _total: callback(offset + i, n) if callback is not None else None

    res = fpe_residual_curve(model, x0, times, div="exact", dt="autodiff", points="pert", generator=generator,
                             callback=tick(0))
    out = {"t": res["t"], "residual": res["residual"], "dt_score": res["lhs"], "grad_phi": res["rhs"]}
    if law is not None:
        truth = law.to(dtype=x0.dtype, device=x0.device).score_model(model.sde)
        fc = fisher_curve(model, truth, x0, times, generator=generator, callback=tick(len(times)), **fisher)
        for k, v in fc.items():
            if k != "t":
                out[k] = v
    return out


def toy_curves(
    model: ScoreModel,
    dataset: str,
    n: int,
    ts: Sequence[float] | Tensor,
    *,
    seed: int = 0,
    dim: int | None = None,
    scale: float | None = None,
    device: Any = "cpu",
    **kwargs: Any,
) -> dict[str, list[float]]:
    """`toy_mechanism` on n test points of a toy data set (`toys.test_points(dataset, n, seed)`,
    the points `toy_nll` scores), with the data law where it is closed-form (`toys.toy_law`).
    `kwargs`: `toy_mechanism`'s keyword arguments (ode, rtol, atol, generator, callback)."""
    from . import toys

    law = toys.toy_law(dataset, dim, scale)
    x0 = toys.test_points(dataset, n, seed=seed, dim=dim, scale=scale).to(device)
    return toy_mechanism(model, law, x0, ts, **kwargs)

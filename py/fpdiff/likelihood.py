"""Log-likelihood and bits/dim by the probability-flow ODE (Song et al. 2021, §4.3, App. D.2;
docs/maths.md §8).

    dx/dt = h(x, t) = f(x, t) − ½ g(t)² s(x, t),   d/dt Δ = ∇·h = ∇·f − ½ g² ∇·s
    log p_ε(x) = log p_T(x_T) + ∫_ε^T ∇·h(x_t, t) dt

The ODE is solved by torchdiffeq on the model's device for the whole batch as one system (the
original solves with scipy RK45 and copies the state between NumPy and torch at every
evaluation). ∇·s is exact for small D (one forward and one vectorised backward pass with the D
basis cotangents) or a Hutchinson estimate (one forward-mode pass) with one probe held fixed over
the solve (as the original).

bits/dim = −log p / (D ln 2) + offset, offset = 8 for data in [0, 1] and 7 for centred [−1, 1]
data (= 7 − inverse_scaler(−1)); uniform dequantisation x ← (255·x + u)/256, u ~ U[0, 1), in
[0, 1] space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .derivatives import MAX_EXACT_DIM, divergence_eval, sample_probes
from .score import ScoreModel
from .sde import bcast

Tensor = torch.Tensor
Callback = Callable[[int, "int | None"], None]


@dataclass
class LikelihoodResult:
    logp: Tensor  # [B] nats, log p_ε(x)
    prior_logp: Tensor  # [B]
    delta_logp: Tensor  # [B] ∫ ∇·h dt
    z: Tensor  # x_T
    nfe: int
    solver: str = "dopri5"  # what produced the answer (a fallback names itself)


ADAPTIVE = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
FALLBACK_STEPS = 1000


def solve_ode(func: Callable, y0: Any, ts: Tensor, *, rtol: float, atol: float, method: str,
              options: dict | None = None) -> tuple[Any, str]:
    """torchdiffeq's ``odeint``, and the name of the solver that produced the answer.

    An adaptive solver's step collapses ("underflow in dt") when a badly trained score makes the
    flow stiff somewhere in the batch; a fine fixed-step RK4 still gives an answer, and the
    returned name says so (callers report it)."""
    from torchdiffeq import odeint

    try:
        return odeint(func, y0, ts, rtol=rtol, atol=atol, method=method, options=options), method
    except AssertionError as exc:
        if "underflow" not in str(exc) or method not in ADAPTIVE:
            raise
    step = float(abs(ts[-1] - ts[0])) / FALLBACK_STEPS
    sol = odeint(func, y0, ts, method="rk4", options={"step_size": step})
    return sol, f"rk4 ({FALLBACK_STEPS} steps, after {method} underflowed)"


def _divergence_mode(divergence: str, d: int) -> str:
    if divergence == "auto":
        return "exact" if d <= 16 else "hutchinson"
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact', 'hutchinson' or 'auto', got {divergence!r}")
    if divergence == "exact" and d > MAX_EXACT_DIM:
        raise ValueError(f"exact divergence for D = {d} is too costly; use 'hutchinson'")
    return divergence


def ode_likelihood(
    model: ScoreModel,
    x: Tensor,
    *,
    eps: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    divergence: str = "auto",
    probe: str = "gaussian",
    generator: torch.Generator | None = None,
    prior_logp: Callable[[Tensor], Tensor] | None = None,
    options: dict | None = None,
    callback: Callback | None = None,
    div_mode: str = "auto",
) -> LikelihoodResult:
    """log p_ε(x) per sample by integrating the probability-flow ODE from eps to T.

    `prior_logp` replaces the SDE's prior density at T (tests use the exact q_T); `callback(nfe,
    None)` is called at every function evaluation and may raise to cancel; `div_mode` picks how
    ∇·s is differentiated (`derivatives.divergence_eval`).
    """
    sde = model.sde
    b = x.shape[0]
    d = x[0].numel()
    mode = _divergence_mode(divergence, d)
    probes = sample_probes(x, 1, probe, generator) if mode == "hutchinson" else None
    nfe = 0

    def func(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        if callback is not None:
            callback(nfe, None)
        xs = state[0]
        vt = t.expand(b).to(xs.dtype)
        s, div_s = divergence_eval(model, xs, vt, probes, mode=div_mode)
        g2 = sde.g2(vt)
        dx = sde.drift(xs, vt) - 0.5 * bcast(g2, xs) * s
        ddelta = sde.div_drift(xs, vt) - 0.5 * g2 * div_s
        return dx, ddelta

    ts = torch.tensor([eps, sde.T], dtype=x.dtype, device=x.device)
    y0 = (x, torch.zeros(b, dtype=x.dtype, device=x.device))
    with torch.no_grad():
        (xs, deltas), solver = solve_ode(func, y0, ts, rtol=rtol, atol=atol, method=method, options=options)
    z, delta = xs[-1], deltas[-1]
    prior = (prior_logp or sde.prior_logp)(z)
    return LikelihoodResult(logp=prior + delta, prior_logp=prior, delta_logp=delta, z=z, nfe=nfe, solver=solver)


@dataclass
class BpdResult:
    bpd: float  # mean over repeats and samples
    per_sample: Tensor  # [repeats, B] bits/dim
    nll: Tensor  # [repeats, B] nats of the (dequantised) data in model space
    nfe: list[int]
    solvers: list = field(default_factory=list)  # per repeat: the solver that answered


def bpd_offset(centered: bool) -> float:
    """7 − inverse_scaler(−1): 8 for data in [0, 1], 7 for data in [−1, 1]."""
    return 7.0 if centered else 8.0


def bits_per_dim(
    model: ScoreModel,
    x: Tensor,
    *,
    centered: bool = False,
    dequantize: bool = True,
    repeats: int = 1,
    generator: torch.Generator | None = None,
    **ode_kwargs,
) -> BpdResult:
    """bits/dim of a batch of images x in model space ([0, 1], or [−1, 1] when `centered`).

    Each repeat draws fresh dequantisation noise and a fresh Hutchinson probe (the high-order
    paper reports the mean of 5 repeats).
    """
    d = x[0].numel()
    offset = bpd_offset(centered)
    per, nll, nfes, solvers = [], [], [], []
    for _ in range(int(repeats)):
        xi = x
        if dequantize:
            x01 = (x + 1) / 2 if centered else x
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x01 = (255.0 * x01 + u) / 256.0
            xi = 2 * x01 - 1 if centered else x01
        res = ode_likelihood(model, xi, generator=generator, **ode_kwargs)
        per.append(-res.logp / (d * math.log(2.0)) + offset)
        nll.append(-res.logp)
        nfes.append(res.nfe)
        solvers.append(res.solver)
    per_t = torch.stack(per, 0)
    return BpdResult(bpd=float(per_t.mean()), per_sample=per_t, nll=torch.stack(nll, 0), nfe=nfes, solvers=solvers)

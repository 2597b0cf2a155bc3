"""Log-likelihood and bits/dim by the probability-flow ODE (Song et al. 2021, §4.3, App. D.2;
docs/maths.md §8).

    dx/dt = h(x, t) = f(x, t) − ½ g(t)² s(x, t),   d/dt Δ = ∇·h = ∇·f − ½ g² ∇·s
    log p_ε(x) = log p_T(x_T) + ∫_ε^T ∇·h(x_t, t) dt

With the adaptive "dopri5" every sample integrates its own ODE on its own steps (`ode.dopri5`),
batched into one network call per stage, with the state (x, Δ) in float64 around a network in
its own precision: a sample's likelihood does not depend on the batch it is in, and equals its
solve alone, as far as the network gives a sample the same output in any batch (a float32 network
on CPU differs by ~1e-7 between batch sizes, which an adaptive solve can turn into another step
sequence: a few per cent of evaluations and ~1e-3 bits/dim on the 8 × 8 VP fixture). The error
test is scipy's per-component RMS over the sample's whole state, as the original's RK45 applies
it to its flattened float64 state (`norm="rms"`); `norm="mixed"` also holds Δ to the tolerance on
its own (torchdiffeq's default). Fixed-step "rk4" / "euler" run torchdiffeq on the batch.

Measured (bench/numerics/likelihood_step_control.py: the 8 × 8 fixture networks at rtol = atol =
1e-5 against a float64 solve at 1e-7; Score SDE's batch solve takes 1166 evaluations for VP and
errs by 1.4e-2 bits/dim): in log t, VP takes 1148–1235 evaluations per image and errs by 3.4e-3
to 8.7e-3 bits/dim, both moving with the step sequence (tolerance 0.9e-5 to 1.1e-5, batch
composition) more than with anything below; in t it takes 4 % fewer and errs by 1.3e-2; in
log-SNR time (λ = log α/σ) 2–5 % fewer, erring by 4.8e-3 to 1.2e-2; the mixed norm costs +29 %
(VE +150 %) without a smaller VP error; Hairer's PI step rule (`ode.StepControl`) stays within
that spread. Hence log t for VP / subVP, t for VE, the RMS norm and scipy's step rule.

∇·s is exact for small D or a Hutchinson estimate (`divergence.py`) with one probe per sample
held fixed over the solve (as the original; Rademacher by default, as the original's and the
experiments' default).

bits/dim = −log p / (D ln 2) + offset, offset = 8 for data in [0, 1] and 7 for centred [−1, 1]
data (= 7 − inverse_scaler(−1)); uniform dequantisation x ← (255·x + u)/256, u ~ U[0, 1), in
[0, 1] space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import ode
from .derivatives import MAX_EXACT_DIM, sample_probes
from .divergence import divergence_eval
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
    nfe: int  # batched evaluations of the ODE's right-hand side (network calls per stage)
    solver: str = "dopri5"  # what produced the answer (a fallback names itself)
    nfe_per_sample: Tensor | None = None  # [B] evaluations each sample's own solve took


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
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    probes: Tensor | None = None,
    prior_logp: Callable[[Tensor], Tensor] | None = None,
    options: dict | None = None,
    callback: Callback | None = None,
    div_mode: str = "auto",
    norm: str = "rms",
    state_dtype: torch.dtype = torch.float64,
    time: str = "auto",
    step_control: ode.StepControl | None = None,
) -> LikelihoodResult:
    """log p_ε(x) per sample by integrating the probability-flow ODE from eps to T.

    Plain arguments: the score model (its SDE included), the points x [B, ...] in model space,
    the solver settings, and the generator that draws the Hutchinson probes (or `probes` [1, B,
    ...] themselves). `prior_logp` replaces the SDE's prior density at T (tests use the exact
    q_T); `callback(nfe, None)` is called at every batched evaluation and may raise to cancel;
    `div_mode` picks how ∇·s is differentiated (`divergence.divergence_eval`); `norm` and
    `state_dtype` are the per-sample solver's error norm and state precision and `step_control` its
    step-size rule (`ode.dopri5`);
    `time` its time variable: "t", "log" (τ = log t) or "auto" (log for VP / subVP, whose flow is
    singular at t → 0, t for VE, whose std never falls below σ_min).
    """
    sde = model.sde
    b = x.shape[0]
    d = x[0].numel()
    mode = _divergence_mode(divergence, d)
    if mode == "hutchinson" and probes is None:
        probes = sample_probes(x, 1, probe, generator)
    if mode == "exact":
        probes = None
    net_dtype = x.dtype
    calls = 0

    def rhs(t: Tensor, xs: Tensor, idx: Tensor | None) -> tuple[Tensor, Tensor]:
        """(h, ∇·h) at per-sample times t [b]; the network sees x and t in its own dtype."""
        nonlocal calls
        calls += 1
        if callback is not None:
            callback(calls, None)
        v = None if probes is None else (probes if idx is None else probes[:, idx])
        s, div_s = divergence_eval(model, xs.to(net_dtype), t.to(net_dtype), v, mode=div_mode)
        g2 = sde.g2(t)
        dx = sde.drift(xs, t) - 0.5 * bcast(g2, xs) * s.to(xs.dtype)
        ddelta = sde.div_drift(xs, t) - 0.5 * g2 * div_s.to(xs.dtype)
        return dx, ddelta

    with torch.no_grad():
        if method == "dopri5":
            if time == "auto":
                time = "t" if sde.kind == "ve" else "log"
            z, delta, nfe_each, solver = _per_sample_solve(rhs, x, eps, sde.T, rtol, atol, norm, state_dtype, time,
                                                           step_control)
        else:
            def func(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
                return rhs(t.expand(b).to(state[0].dtype), state[0], None)

            ts = torch.tensor([eps, sde.T], dtype=x.dtype, device=x.device)
            y0 = (x, torch.zeros(b, dtype=x.dtype, device=x.device))
            (xs, deltas), solver = solve_ode(func, y0, ts, rtol=rtol, atol=atol, method=method, options=options)
            z, delta = xs[-1], deltas[-1]
            nfe_each = torch.full((b,), calls, dtype=torch.long)
    z = z.to(x.dtype)
    prior = (prior_logp or sde.prior_logp)(z)
    delta = delta.to(prior.dtype)
    return LikelihoodResult(logp=prior + delta, prior_logp=prior, delta_logp=delta, z=z, nfe=calls, solver=solver,
                            nfe_per_sample=nfe_each.cpu())


TIMES = ("t", "log")


def _per_sample_solve(rhs, x: Tensor, eps: float, T: float, rtol: float, atol: float, norm: str,
                      state_dtype: torch.dtype, time: str,
                      control: ode.StepControl | None = None) -> tuple[Tensor, Tensor, Tensor, str]:
    """(x_T, Δ, per-sample NFE, solver) by `ode.dopri5`; samples whose step size underflows (a
    badly trained score can make the flow stiff) are solved again by fixed-step RK4, named.

    `time="log"` integrates in τ = log t (dy/dτ = t·dy/dt): near t = ε the VP / subVP flow and
    its log-density rate grow like t^{-1/2} and t^{-1} (std(t)² ≈ β_min·t), which are smooth in
    τ, so the error control sees a smooth problem there instead of a singular one."""
    if time not in TIMES:
        raise ValueError(f"time must be one of {', '.join(TIMES)}, got {time!r}")
    b = x.shape[0]
    y0 = (x, torch.zeros(b, dtype=x.dtype, device=x.device))
    if time == "log" and eps > 0:  # (eps = 0 has no log: solved in t)
        def f(tau: Tensor, y: tuple, idx: Tensor) -> tuple:
            t = tau.exp()
            dx, dd = rhs(t, y[0], idx)
            return bcast(t, dx).to(dx.dtype) * dx, t.to(dd.dtype) * dd

        sol = ode.dopri5(f, y0, math.log(eps), math.log(T), rtol=rtol, atol=atol, norm=norm, state_dtype=state_dtype,
                         control=control)
    else:
        sol = ode.dopri5(lambda t, y, idx: rhs(t, y[0], idx), y0, eps, T, rtol=rtol, atol=atol, norm=norm,
                         state_dtype=state_dtype, control=control)
    z, delta = sol.y
    nfe = sol.nfe.clone()
    if not bool(sol.failed.any()):
        return z, delta, nfe, "dopri5"
    bad = sol.failed.nonzero().squeeze(1)
    step = (T - eps) / FALLBACK_STEPS
    xs, ds = _rk4(lambda t, y: rhs(t.expand(bad.numel()), y[0], bad), (x[bad].to(z.dtype), delta.new_zeros(bad.numel())),
                  eps, step, FALLBACK_STEPS)
    z[bad], delta[bad] = xs, ds
    nfe[bad] += 4 * FALLBACK_STEPS
    return z, delta, nfe, f"rk4 ({FALLBACK_STEPS} steps, after dopri5 underflowed)"


def _rk4(func, y: tuple, t0: float, h: float, n: int) -> tuple:
    """Classical fixed-step RK4 on a tuple state (the fallback of an underflowed adaptive solve)."""
    t = torch.tensor(t0, dtype=torch.float64, device=y[0].device)
    for _ in range(n):
        k1 = func(t, y)
        k2 = func(t + h / 2, tuple(a + h / 2 * k for a, k in zip(y, k1)))
        k3 = func(t + h / 2, tuple(a + h / 2 * k for a, k in zip(y, k2)))
        k4 = func(t + h, tuple(a + h * k for a, k in zip(y, k3)))
        y = tuple(a + h / 6 * (p + 2 * q + 2 * r + w) for a, p, q, r, w in zip(y, k1, k2, k3, k4))
        t = t + h
    return y


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
    noise: Tensor | None = None,
    probes: Tensor | None = None,
    **ode_kwargs,
) -> BpdResult:
    """bits/dim of a batch of images x in model space ([0, 1], or [−1, 1] when `centered`).

    Each repeat draws fresh dequantisation noise and a fresh Hutchinson probe from `generator`
    (the high-order paper reports the mean of 5 repeats), or takes them from `noise` [repeats, B,
    ...] (u in [0, 1)) and `probes` [repeats, 1, B, ...]: a driver that shards a data set draws
    them per image (e.g. from the image's index), and every image's answer is then the same in
    any shard, since each sample's ODE is solved on its own steps.
    """
    d = x[0].numel()
    offset = bpd_offset(centered)
    per, nll, nfes, solvers = [], [], [], []
    for r in range(int(repeats)):
        xi = x
        if dequantize:
            x01 = (x + 1) / 2 if centered else x
            u = noise[r] if noise is not None else torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x01 = (255.0 * x01 + u.to(x.dtype)) / 256.0
            xi = 2 * x01 - 1 if centered else x01
        res = ode_likelihood(model, xi, generator=generator, probes=None if probes is None else probes[r], **ode_kwargs)
        per.append(-res.logp / (d * math.log(2.0)) + offset)
        nll.append(-res.logp)
        nfes.append(res.nfe)
        solvers.append(res.solver)
    per_t = torch.stack(per, 0)
    return BpdResult(bpd=float(per_t.mean()), per_sample=per_t, nll=torch.stack(nll, 0), nfe=nfes, solvers=solvers)

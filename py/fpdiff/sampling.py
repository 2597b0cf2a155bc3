"""Samplers over a `ScoreModel` (Song et al. 2021, §4 and Appendix G; docs/maths.md §9).

Pure functions in the k-diffusion style: a predictor step, a corrector step, and loops that
call them. Every loop accepts `callback(step, total)` (called after each step; for the ODE
sampler after each function evaluation with total None) which may raise to cancel.

- PC sampler: from the prior at T down to eps on N equally spaced times; predictor
  "reverse_diffusion" (the SDE's own discretisation run backwards), "euler_maruyama" or "none";
  corrector "langevin" (step size 2α(snr·‖z‖/‖s‖)², norms averaged over the batch) or "none";
  with noise removal the last predictor mean is returned.
- ODE sampler: the probability-flow ODE from T to eps with torchdiffeq, optionally followed by
  one noise-free reverse-diffusion step at eps.

Samples are returned in model space; mapping back to data space is the caller's job.
Where the original Langevin corrector reads `sde.alphas` for subVP (which the original subVP
class lacks), this uses the DDPM α_i of the same β schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .score import ScoreModel
from .sde import SDE, VESDE, bcast, make_sde

Tensor = torch.Tensor
Callback = Callable[[int, "int | None"], None]

PREDICTORS = ("reverse_diffusion", "euler_maruyama", "none")
CORRECTORS = ("langevin", "none")


@dataclass
class SampleResult:
    x: Tensor
    nfe: int


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def reverse_diffusion_step(model: ScoreModel, sde: SDE, x: Tensor, t: Tensor,
                           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """x ← x − f_rev + G z with (f_rev, G) the reverse of the SDE's discretisation."""
    f, G = sde.reverse(model.score).discretize(x, t)
    x_mean = x - f
    return x_mean + bcast(G, x) * _randn(x, generator), x_mean


def euler_maruyama_step(model: ScoreModel, sde: SDE, x: Tensor, t: Tensor,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """x ← x + [f − g²s](−Δt) + g √Δt z with Δt = 1/N."""
    dt = -1.0 / sde.N
    drift, g = sde.reverse(model.score).sde(x, t)
    x_mean = x + drift * dt
    return x_mean + bcast(g, x) * math.sqrt(-dt) * _randn(x, generator), x_mean


def langevin_step(model: ScoreModel, sde: SDE, x: Tensor, t: Tensor, snr: float,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One Langevin MCMC step with the signal-to-noise step-size rule (Song et al. 2021, Alg. 4)."""
    if isinstance(sde, VESDE):
        alpha = torch.ones_like(t)
    else:
        idx = (t * (sde.N - 1) / sde.T).long()
        alpha = sde.alphas.to(t.device)[idx].to(t.dtype)  # type: ignore[attr-defined]
    grad = model.score(x, t)
    noise = _randn(x, generator)
    grad_norm = grad.reshape(grad.shape[0], -1).norm(dim=-1).mean()
    noise_norm = noise.reshape(noise.shape[0], -1).norm(dim=-1).mean()
    step = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
    x_mean = x + bcast(step, x) * grad
    return x_mean + bcast(torch.sqrt(2 * step), x) * noise, x_mean


def _sde_with_n(sde: SDE, n: int | None) -> SDE:
    if n is None or int(n) == sde.N:
        return sde
    kwargs = {k: v for k, v in sde.config().items() if k != "kind"}
    return type(sde)(**{**kwargs, "N": int(n)})


def pc_sample(
    model: ScoreModel,
    shape,
    *,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_steps_each: int = 1,
    noise_removal: bool = True,
    N: int | None = None,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    device=None,
    dtype=None,
    x_init: Tensor | None = None,
    callback: Callback | None = None,
) -> SampleResult:
    """Predictor–corrector sampling (defaults: Score SDE's reverse diffusion + Langevin, snr 0.16)."""
    if predictor == "none" and corrector == "none":
        raise ValueError('a PC sampler needs a predictor or a corrector (both are "none")')
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {CORRECTORS}, got {corrector!r}")
    sde = _sde_with_n(model.sde, N)
    n = sde.N
    with torch.no_grad():
        x = x_init if x_init is not None else sde.prior_sample(shape, generator=generator, device=device, dtype=dtype)
        x_mean = x
        times = torch.linspace(sde.T, eps, n, device=x.device, dtype=x.dtype)
        nfe = 0
        for i in range(n):
            vt = times[i].expand(x.shape[0])
            if corrector == "langevin":
                for _ in range(int(n_steps_each)):
                    x, x_mean = langevin_step(model, sde, x, vt, snr, generator)
                    nfe += 1
            if predictor == "reverse_diffusion":
                x, x_mean = reverse_diffusion_step(model, sde, x, vt, generator)
                nfe += 1
            elif predictor == "euler_maruyama":
                x, x_mean = euler_maruyama_step(model, sde, x, vt, generator)
                nfe += 1
            if callback is not None:
                callback(i + 1, n)
    return SampleResult(x=x_mean if noise_removal else x, nfe=nfe)


def ode_sample(
    model: ScoreModel,
    shape,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    eps: float = 1e-3,
    noise_removal: bool = False,
    generator: torch.Generator | None = None,
    device=None,
    dtype=None,
    z: Tensor | None = None,
    options: dict | None = None,
    callback: Callback | None = None,
) -> SampleResult:
    """Probability-flow ODE sampling from T to eps (Song et al. 2021, §4.3)."""
    from .likelihood import solve_ode

    sde = model.sde
    nfe = 0

    def func(t: Tensor, x: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        if callback is not None:
            callback(nfe, None)
        vt = t.expand(x.shape[0]).to(x.dtype)
        return sde.ode_drift(x, vt, model.score(x, vt))

    with torch.no_grad():
        x = z if z is not None else sde.prior_sample(shape, generator=generator, device=device, dtype=dtype)
        ts = torch.tensor([sde.T, eps], dtype=x.dtype, device=x.device)
        sol, _solver = solve_ode(func, x, ts, rtol=rtol, atol=atol, method=method, options=options)
        x = sol[-1]
        if noise_removal:
            _, x = reverse_diffusion_step(model, sde, x, torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device),
                                          generator)
            nfe += 1
    return SampleResult(x=x, nfe=nfe)

"""A batched explicit Runge–Kutta 5(4) solver (Dormand & Prince 1980) with one step size per sample.

Every sample of the batch solves its own ODE: its own time, step size, error test and
accept/reject, exactly as if it were solved alone (Hairer, Nørsett & Wanner, *Solving ODEs I*,
§II.4 step-size control, §II.4 "starting step size"), while each function evaluation runs the
network once on all samples still integrating, at their own times. A sample's answer therefore
does not depend on the rest of the batch, which a shared step size (torchdiffeq, or scipy on a
flattened batch) cannot give: there the step is set by the batch's error norm, so the same image
gets a different answer in different company.

No library offers this on torch 1.13: torchdiffeq shares one step across the batch, torchode
(per-sample steps) needs torch ≥ 2.

The state is a tuple of tensors with the batch as their first dimension, kept in `state_dtype`
(float64 by default: the integrator's own arithmetic is then exact to far below any tolerance,
whatever precision the network computes in).

Step-size control (`StepControl`) is scipy's RK45 rule by default (`ELEMENTARY`): accept iff the
RMS error ratio r < 1, h ← h·0.9·r^(−1/5) within ×0.2…×10, no growth right after a rejection, and
Hairer's initial step (one extra evaluation). It stays the default because nothing measured beat
it (bench/numerics/likelihood_step_control.py on the fixture networks' likelihood flows, whose
error estimates jump up to 10× between steps of equal size: a time embedding oscillating faster
than the steps resolve, the log-density dominating the estimate near t = ε). Hairer's PI rule
(`HAIRER_PI`, β = 0.04) cuts rejections by a third to a half but takes 6–11 % more accepted
steps, its stationary error ratio being 0.9^(1/0.13) ≈ 0.45 against 0.9^5 ≈ 0.59: −1 % to +4 %
evaluations, inside the few per cent that rounding alone (thread count, batch size) moves a
solve's count, and no smaller error; β = 0.08 costs +20 %; the PI rule at the elementary rule's
stationary ratio moves the count by −4 % (VE) to +1 % (VP). Keeping the rule also keeps each
sample's steps identical to scipy's RK45 (tests/test_ode.py checks the counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Tensor = torch.Tensor
#: func(t [b], y (tensors [b, ...]), idx [b]) -> dy/dt (same shapes); idx are the batch indices of
#: the samples evaluated (a subset of the batch once some have finished).
Func = Callable[[Tensor, tuple, Tensor], tuple]

# Dormand–Prince 5(4) tableau: nodes c, stages a, 5th-order weights b, and e = b − b̂ (b̂ the
# embedded 4th-order weights), whose combination of the stages is the local error estimate.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)

NORMS = ("rms", "mixed")
#: Hairer's floor on the previous error ratio in the PI rule (and its value before the first step).
RATIO_FLOOR = 1e-4


@dataclass(frozen=True)
class StepControl:
    """The step-size rule after an attempt with error ratio r = ‖err/scale‖ (accepted iff r < 1):

        accepted: h ← h · clip(safety · r^(−α) · r_old^β, min_factor, max_factor), α = 1/5 − ¾β,
                  and no growth on the attempt right after a rejection;
        rejected: h ← h · max(min_factor, safety · r^(−α)),

    r_old the ratio of the sample's last accepted step (floored at 1e-4). β = 0 is the elementary
    (integral) controller h ∝ r^(−1/5) of scipy's RK45 and torchdiffeq; β = 0.04 the PI controller
    of Hairer's DOPRI5 code (Gustafsson 1991; Hairer, Nørsett & Wanner I, §II.4, and II, §IV.2).
    The step counts of either on the likelihood fixtures are in bench/results/likelihood_step_control_*.
    """

    safety: float = 0.9
    beta: float = 0.0
    min_factor: float = 0.2
    max_factor: float = 10.0

    def factor(self, ratio: Tensor, ratio_old: Tensor, after_rejection: Tensor) -> Tensor:
        """h_new / h per sample, from this attempt's ratio [n], the last accepted ratio [n] and
        whether the previous attempt was rejected [n] (bool)."""
        r = ratio.clamp_min(1e-300)
        plain = self.safety * r.pow(-(0.2 - 0.75 * self.beta))
        grow = (plain * ratio_old.pow(self.beta)).clamp(self.min_factor, self.max_factor)
        grow = torch.where(after_rejection, grow.clamp(max=1.0), grow)
        return torch.where(ratio < 1, grow, plain.clamp(self.min_factor, 1.0))


#: scipy's RK45 rule (safety 0.9, factors 0.2…10): the default, chosen on the measurements in the
#: module docstring.
ELEMENTARY = StepControl()
#: Hairer's DOPRI5 PI rule (β = 0.04), for comparison.
HAIRER_PI = StepControl(beta=0.04)


@dataclass
class PerSampleSolution:
    y: tuple  # the state at t1 (failed samples: where they stopped)
    nfe: Tensor  # [B] function evaluations each sample took (its own solve's count)
    steps: Tensor  # [B] accepted steps
    rejected: Tensor  # [B] rejected steps
    failed: Tensor  # [B] bool: the step size underflowed before t1
    calls: int  # batched calls of func (= max of nfe)


def error_norm(err: Sequence[Tensor], scale: Sequence[Tensor], norm: str) -> Tensor:
    """Per-sample size of the scaled error, [b].

    "rms": root mean square over every component of the sample's state (scipy's norm, applied
    to one sample); "mixed": the largest of the per-tensor RMS values (torchdiffeq's, per sample),
    so a tensor with few components (a log-density) is held to the tolerance on its own.
    """
    parts = [(e / s).reshape(e.shape[0], -1) for e, s in zip(err, scale)]
    if norm == "rms":
        total = sum(p.pow(2).sum(1) for p in parts)
        n = sum(p.shape[1] for p in parts)
        return (total / n).sqrt()
    if norm == "mixed":
        return torch.stack([p.pow(2).mean(1).sqrt() for p in parts], 0).max(0).values
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _combine(weights: Sequence[float], stages: Sequence[tuple], m: int) -> Tensor:
    """Σ_j weights[j]·stages[j][m] over the non-zero weights."""
    return sum(w * k[m] for w, k in zip(weights, stages) if w != 0.0)  # type: ignore[return-value]


def _bc(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _scale(y: Sequence[Tensor], y_new: Sequence[Tensor] | None, rtol: float, atol: float) -> list[Tensor]:
    if y_new is None:
        return [atol + rtol * a.abs() for a in y]
    return [atol + rtol * torch.maximum(a.abs(), b.abs()) for a, b in zip(y, y_new)]


def dopri5(
    func: Func,
    y0: Sequence[Tensor],
    t0: float,
    t1: float,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    norm: str = "rms",
    state_dtype: torch.dtype | None = torch.float64,
    max_steps: int = 100_000,
    callback: Callable[[int], None] | None = None,
    control: StepControl | None = None,
) -> PerSampleSolution:
    """Integrate dy/dt = func(t, y) from t0 to t1 (either direction), each sample on its own
    adaptive steps; every sample's last step lands on t1 exactly.

    `callback(calls)` runs after every batched evaluation (it may raise to cancel); `control` is
    the step-size rule (default: `ELEMENTARY`, scipy's RK45 rule).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    control = control or ELEMENTARY
    y = tuple(a.to(dtype=state_dtype or a.dtype, copy=True) for a in y0)
    b = y[0].shape[0]
    dev = y[0].device
    tdt = torch.float64
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    t = torch.full((b,), float(t0), dtype=tdt, device=dev)
    nfe = torch.zeros(b, dtype=torch.long, device=dev)
    steps = torch.zeros_like(nfe)
    rejected = torch.zeros_like(nfe)
    failed = torch.zeros(b, dtype=torch.bool, device=dev)
    calls = 0

    def f(tt: Tensor, yy: tuple, idx: Tensor) -> tuple:
        nonlocal calls
        out = func(tt, yy, idx)
        calls += 1
        nfe[idx] += 1
        if callback is not None:
            callback(calls)
        return tuple(o.to(a.dtype) for o, a in zip(out, yy))

    everyone = torch.arange(b, device=dev)
    if span == 0:
        return PerSampleSolution(y, nfe, steps, rejected, failed, 0)
    f0 = f(t, y, everyone)
    h = _initial_step(f, t, y, f0, everyone, direction, span, rtol, atol, norm)

    k_first = list(f0)  # FSAL: the last stage of an accepted step is the next step's first
    was_rejected = torch.zeros(b, dtype=torch.bool, device=dev)
    ratio_old = torch.full((b,), RATIO_FLOOR, dtype=tdt, device=dev)  # the last accepted step's error ratio
    active = torch.ones(b, dtype=torch.bool, device=dev)
    tiny = 10 * torch.finfo(tdt).eps
    for _ in range(max_steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        ta, ha = t[idx], h[idx]
        ya = tuple(a[idx] for a in y)
        remaining = (t1 - ta) * direction
        ha = torch.minimum(ha, remaining)
        underflow = ha <= tiny * torch.maximum(ta.abs(), torch.ones_like(ta))
        if bool(underflow.any()):
            failed[idx[underflow]] = True
            active[idx[underflow]] = False
            keep = ~underflow
            idx, ta, ha, remaining = idx[keep], ta[keep], ha[keep], remaining[keep]
            ya = tuple(a[keep] for a in ya)
            if idx.numel() == 0:
                continue
        hs = ha * direction  # signed step
        ks = [tuple(k[idx] for k in k_first)]
        for i in range(1, 6):
            yi = tuple(a + _bc(hs, a).to(a.dtype) * _combine(_A[i], ks, m) for m, a in enumerate(ya))
            ks.append(f(ta + _C[i] * hs, yi, idx))
        y_new = tuple(a + _bc(hs, a).to(a.dtype) * _combine(_B, ks, m) for m, a in enumerate(ya))
        t_new = torch.where(ha >= remaining, torch.full_like(ta, float(t1)), ta + hs)
        k7 = f(t_new, y_new, idx)
        stages = ks + [k7]
        err = tuple(_bc(hs, a).to(a.dtype) * _combine(_E, stages, m) for m, a in enumerate(ya))
        ratio = error_norm(err, _scale(ya, y_new, rtol, atol), norm).to(tdt)
        ok = ratio < 1
        h[idx] = ha * control.factor(ratio, ratio_old[idx], was_rejected[idx])
        was_rejected[idx] = ~ok
        rejected[idx] += (~ok).long()
        acc = idx[ok]
        if acc.numel():
            ratio_old[acc] = ratio[ok].clamp_min(RATIO_FLOOR)
            steps[acc] += 1
            t[acc] = t_new[ok]
            for m in range(len(y)):
                y[m][acc] = y_new[m][ok]
                k_first[m][acc] = k7[m][ok]
            done = acc[(t[acc] - t1) * direction >= 0]
            active[done] = False
    else:
        failed |= active
    return PerSampleSolution(y, nfe, steps, rejected, failed, calls)


def _initial_step(f, t, y, f0, idx, direction, span, rtol, atol, norm) -> Tensor:
    """Per-sample first step from the size of y, y' and an estimate of y'' (Hairer et al. §II.4),
    at the cost of one evaluation."""
    scale = _scale(y, None, rtol, atol)
    d0 = error_norm(y, scale, norm).double()
    d1 = error_norm(f0, scale, norm).double()
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
    h0 = h0.clamp(max=span)
    y1 = tuple(a + _bc(direction * h0, a).to(a.dtype) * k for a, k in zip(y, f0))
    f1 = f(t + direction * h0, y1, idx)
    d2 = error_norm(tuple(a - b for a, b in zip(f1, f0)), scale, norm).double() / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                     (0.01 / dmax.clamp_min(1e-300)).pow(1 / 5))
    return torch.minimum(100 * h0, h1).clamp(max=span)

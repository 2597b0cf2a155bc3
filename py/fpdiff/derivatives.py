"""Derivatives of a `ScoreModel` for the losses: a per-step cache that keeps autograd graphs.

Quantities (x of shape [B, ...], D = numel of one sample, s = s(x, t)):

- s and J·v (J = ∂s/∂x) in one forward-mode pass (dual numbers);
- ∂t s exactly by forward mode in t, or by the original three-point stencil
  (hs²·s(t+hd) + (hd²−hs²)·s(t) − hd²·s(t−hs)) / (hs·hd·(hd+hs))  (FP-Diffusion `diff.py`);
- the exact Jacobian J [B, D, D] and ∇·s = tr J for small D, by reverse mode with all D basis
  cotangents in one vectorised backward pass (no Python loop over dimensions);
- Hutchinson ∇·s ≈ mean_k ⟨v_k, J v_k⟩ with Rademacher or Gaussian probes (Hutchinson 1989);
- ∇x of any per-sample scalar built from these, e.g. ∇x(∇·s) or ∇x⟨v, J v⟩ (reverse over forward).

Everything keeps its autograd graph (`create_graph=True`) so losses built from these quantities
backpropagate into the network parameters. `ScoreDerivatives` is a per-step cache: a loss
expression builds one for a draw of (x, t) and every term reads s, J·v, ∂t s from it, so the
forward pass and each derivative pass run once per step. Evaluation (likelihood, diagnostics)
takes ∇·s without graphs from `divergence.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from . import compat
from .score import ScoreModel
from .sde import bcast

Tensor = torch.Tensor

#: Above this per-sample dimension the exact Jacobian is refused (it costs D backward passes).
MAX_EXACT_DIM = 256


@dataclass(frozen=True)
class FiniteDifference:
    """The original asymmetric three-point stencil for ∂t s (docs/maths.md §5.4)."""

    hs: float = 1e-3
    hd: float = 5e-4


def parse_dt(dt: Any) -> str | FiniteDifference:
    """`"autodiff"`, or the stencil of a loss term's / op's `dt` (a generated `FiniteDifference`
    config with its `finite_difference` steps), or a `FiniteDifference` as it is."""
    if dt is None or dt == "autodiff":
        return "autodiff"
    if isinstance(dt, FiniteDifference):
        return dt
    steps = dt.finite_difference
    return FiniteDifference(steps.hs, steps.hd)


def sample_probes(
    like: Tensor, k: int = 1, kind: str = "rademacher", generator: torch.Generator | None = None
) -> Tensor:
    """k Hutchinson probes shaped [k, *like.shape] with E[v vᵀ] = I."""
    shape = (k, *like.shape)
    if kind == "rademacher":
        v = torch.randint(0, 2, shape, generator=generator, device=like.device).to(like.dtype)
        return 2 * v - 1
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {kind!r}")


def _flat(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1)


def sample_inner(a: Tensor, b: Tensor, lead: int = 1) -> Tensor:
    """⟨a, b⟩ summed over all dims after the first `lead` ones (a and b broadcast)."""
    ab = a * b
    return ab.reshape(*ab.shape[:lead], -1).sum(-1)


def sample_sqnorm(a: Tensor, lead: int = 1) -> Tensor:
    return a.pow(2).reshape(*a.shape[:lead], -1).sum(-1)


def dt_stencil_offsets(t: Tensor, fd: FiniteDifference, t_min: float) -> tuple[Tensor, Tensor]:
    """Per-sample offsets (a, b) of the nodes t+a, t+b used with t itself.

    The original evaluates s at t − hs for every t, which leaves the SDE's domain for t < hs
    (NaN scores for VP, docs/maths.md §5.4). Where t − hs < t_min this uses the
    one-sided nodes t + hd, t + 2hd instead; elsewhere it is the original stencil.
    """
    a = torch.full_like(t, fd.hd)
    central = (t - fd.hs) >= t_min
    b = torch.where(central, torch.full_like(t, -fd.hs), torch.full_like(t, 2 * fd.hd))
    return a, b


def stencil_weights(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weights (w0, wa, wb) of the 3-point Lagrange derivative at 0 from nodes 0, a, b.

    With a = hd, b = −hs they are the original's (hd²−hs², hs², −hd²)/(hs·hd·(hd+hs)).
    """
    w0 = -(1.0 / a + 1.0 / b)
    wa = b / (a * (b - a))
    wb = -a / (b * (b - a))
    return w0, wa, wb


class ScoreDerivatives:
    """Per-step cache of s(x, t) and its derivatives at one (x, t).

    Args:
      model: the score.
      x: points [B, ...]; t: times [B].
      x_tangent: probes v [k, B, ...] whose J·v is computed by forward mode in the same pass as s.
      dt: None (no ∂t s), "autodiff" (forward mode in t, exact) or a `FiniteDifference`.
      x_grad: make x a differentiable leaf so ∇x of derived scalars (∇x(∇·s), ∇x⟨v,Jv⟩, …) exist.
      create_graph: whether ∇x of derived scalars (`grad_x`) keeps its graph, i.e. whether the
        final quantities can be backpropagated into the parameters (training). Intermediate
        passes that are differentiated again (J, vᵀJ) always keep theirs.
      t_min: lower end of the SDE's time domain for the finite-difference stencil.

    With both probes and forward-mode ∂t s the batch is replicated (k + 1)·B inside one pass; a
    network with dropout then draws independent masks per replica.
    """

    def __init__(
        self,
        model: ScoreModel,
        x: Tensor,
        t: Tensor,
        *,
        x_tangent: Tensor | None = None,
        dt: str | FiniteDifference | None = None,
        x_grad: bool = False,
        create_graph: bool = True,
        t_min: float = 0.0,
    ):
        self.model = model
        self.t = t if t.dim() > 0 else t.expand(x.shape[0])
        self.create_graph = create_graph
        self.t_min = t_min
        self.x_tangent = x_tangent
        self.dt_mode = None if dt is None else parse_dt(dt)
        self.x_grad = x_grad or x_tangent is not None
        self.x = x.detach().requires_grad_(True) if self.x_grad else x
        self._s: Tensor | None = None
        self._jv: Tensor | None = None
        self._dts: Tensor | None = None
        self._jac: Tensor | None = None
        self._vjp: dict[int, Tensor] = {}
        self._xr: Tensor | None = None  # the replicated points when several tangents share a pass

    # --- the shared forward pass ---------------------------------------------------------------
    def _forward(self) -> None:
        x, t, model = self.x, self.t, self.model
        v = self.x_tangent
        want_dt = self.dt_mode == "autodiff"
        with torch.enable_grad() if self.x_grad or want_dt else _null():
            if v is None and not want_dt:
                self._s = model.score(x, t)
            elif v is None:  # s and ∂t s: one pass with a tangent in t
                self._s, self._dts = compat.dual_jvp(lambda tt: model.score(x, tt), (t,), (torch.ones_like(t),))
            elif not want_dt and v.shape[0] == 1:  # s and J·v: one pass with a tangent in x
                s, jv = compat.dual_jvp(lambda xx: model.score(xx, t), (x,), (v[0],))
                self._s, self._jv = s, jv.unsqueeze(0)
            else:  # several tangents: replicate the batch, one pass
                k = v.shape[0]
                reps = k + (1 if want_dt else 0)
                b = x.shape[0]
                xr = x.unsqueeze(0).expand(reps, *x.shape).reshape(reps * b, *x.shape[1:])
                tr = t.repeat(reps)
                vx = torch.cat([v, torch.zeros_like(x).unsqueeze(0)], 0) if want_dt else v
                vx = vx.reshape(reps * b, *x.shape[1:])
                vt = torch.zeros_like(tr)
                if want_dt:
                    vt[k * b:] = 1
                out, tan = compat.dual_jvp(lambda xx, tt: model.score(xx, tt), (xr, tr), (vx, vt if want_dt else None))
                self._xr = xr
                out = out.reshape(reps, *x.shape)
                tan = tan.reshape(reps, *x.shape)
                self._s = out[0]
                self._jv = tan[:k]
                if want_dt:
                    self._dts = tan[k]

    @property
    def s(self) -> Tensor:
        if self._s is None:
            self._forward()
        return self._s  # type: ignore[return-value]

    @property
    def jv(self) -> Tensor:
        """J·v for the probes given at construction, [k, B, ...]."""
        if self.x_tangent is None:
            raise ValueError("J·v needs x_tangent at construction")
        if self._s is None:
            self._forward()
        return self._jv  # type: ignore[return-value]

    @property
    def dt_s(self) -> Tensor:
        """∂t s at fixed x."""
        if self.dt_mode is None:
            raise ValueError("∂t s needs dt='autodiff' or a FiniteDifference at construction")
        if self._dts is None:
            if self.dt_mode == "autodiff":
                self._forward()
            else:
                self._dts = self._finite_difference(self.dt_mode)  # type: ignore[arg-type]
        return self._dts  # type: ignore[return-value]

    def _finite_difference(self, fd: FiniteDifference) -> Tensor:
        s0 = self.s
        x, t = self.x, self.t
        a, b = dt_stencil_offsets(t, fd, self.t_min)
        w0, wa, wb = stencil_weights(a, b)
        with torch.enable_grad() if self.x_grad else _null():
            both = self.model.score(torch.cat([x, x], 0), torch.cat([t + a, t + b], 0))
        sa, sb = both[: x.shape[0]], both[x.shape[0]:]
        return bcast(w0, s0) * s0 + bcast(wa, s0) * sa + bcast(wb, s0) * sb

    # --- reverse-mode quantities ---------------------------------------------------------------
    def _need_x(self) -> None:
        if not self.x_grad:
            raise ValueError("this derivative needs x_grad=True at construction")

    def jacobian(self) -> Tensor:
        """Exact J [B, D, D] with J[b, i, j] = ∂s_i/∂x_j, by D batched vector-Jacobian products."""
        if self._jac is None:
            self._need_x()
            s = self.s
            b = s.shape[0]
            d = s[0].numel()
            if d > MAX_EXACT_DIM:
                raise ValueError(f"exact Jacobian refused for D = {d} > {MAX_EXACT_DIM}; use Hutchinson")
            eye = torch.eye(d, dtype=s.dtype, device=s.device)
            cot = eye.unsqueeze(1).expand(d, b, d).reshape(d, *s.shape)
            with torch.enable_grad():
                rows = compat.batched_grad(s, self.x, cot, create_graph=True)
            self._jac = rows.reshape(d, b, d).transpose(0, 1)
        return self._jac

    def divergence_exact(self) -> Tensor:
        """∇·s = tr J, [B]."""
        return self.jacobian().diagonal(dim1=1, dim2=2).sum(-1)

    def vjp(self, v: Tensor) -> Tensor:
        """vᵀJ for probes v [k, B, ...] (reverse mode, one batched pass)."""
        key = id(v)
        if key not in self._vjp:
            self._need_x()
            with torch.enable_grad():
                self._vjp[key] = compat.batched_grad(self.s, self.x, v, create_graph=True)
        return self._vjp[key]

    def vjv(self, v: Tensor | None = None) -> Tensor:
        """⟨v_k, J v_k⟩, [k, B]. Uses the forward-mode J·v of the construction probes when v is
        them (or None), else one reverse pass."""
        if v is None or v is self.x_tangent:
            return sample_inner(self.x_tangent, self.jv, lead=2)  # type: ignore[arg-type]
        return sample_inner(v, self.vjp(v), lead=2)

    def divergence_hutchinson(self, v: Tensor | None = None) -> Tensor:
        """Unbiased ∇·s ≈ mean_k ⟨v_k, J v_k⟩, [B]."""
        return self.vjv(v).mean(0)

    def divergence(self, method: str = "exact", v: Tensor | None = None) -> Tensor:
        if method == "exact":
            return self.divergence_exact()
        if method == "hutchinson":
            return self.divergence_hutchinson(v)
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {method!r}")

    def grad_x(self, scalar: Tensor) -> Tensor:
        """∇x of a per-sample scalar [B] (or [k, B], summed over k) built from this cache."""
        self._need_x()
        if not scalar.requires_grad:  # e.g. ∇·s of a score that is linear in x
            return torch.zeros_like(self.x)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(scalar.sum(), self.x, create_graph=self.create_graph, retain_graph=True,
                                       allow_unused=True)
        return torch.zeros_like(self.x) if g is None else g

    def grad_x_probes(self, scalar: Tensor) -> Tensor:
        """Per-probe ∇x of a [k, B] scalar whose row k depends on the points only through the
        replica that carried probe k (e.g. ⟨v_k, J v_k⟩): one reverse pass, [k, B, ...]."""
        if self._s is None:
            self._forward()
        if self._xr is None:
            if scalar.shape[0] != 1:
                raise ValueError("per-probe gradients need the probes given at construction")
            return self.grad_x(scalar[0]).unsqueeze(0)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(scalar.sum(), self._xr, create_graph=self.create_graph, retain_graph=True)
        k = scalar.shape[0]
        return g.reshape(-1, *self.x.shape)[:k]

    def grad_div(self) -> Tensor:
        """∇x(∇·s) exactly (small D)."""
        return self.grad_x(self.divergence_exact())

    def grad_vjv(self) -> Tensor:
        """∇x⟨v, J v⟩ for a single construction probe, [B, ...] (reverse over forward mode)."""
        if self.x_tangent is None or self.x_tangent.shape[0] != 1:
            raise ValueError("grad_vjv needs exactly one construction probe")
        return self.grad_x(self.vjv()[0])


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

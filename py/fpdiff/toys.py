"""Closed-form truth for tests and diagnostics, and the toy data sets.

A Gaussian mixture q_0 = Σ_k w_k N(μ_k, diag Σ_k) stays a Gaussian mixture under every linear
SDE of `sde.py`: q_t = Σ_k w_k N(a(t)μ_k, diag(a(t)²Σ_k + std(t)²)), a = e^{c(t)}. With component
scores s_k = −(x − m_k)/v_k and responsibilities r_k = w_k N_k / q_t:

  s       = Σ r_k s_k
  ∇s      = Σ r_k (diag(−1/v_k) + s_k s_kᵀ) − s sᵀ
  ∇·s     = Σ r_k A_k − ‖s‖²,  A_k = −Σ_d 1/v_kd + ‖s_k‖²
  ∇(∇·s)  = Σ r_k [(s_k − s) A_k − 2 s_k / v_k] − 2 (∇s) s          (∇r_k = r_k (s_k − s))
  ∂t s    = Σ (∂t r_k) s_k + r_k (ṁ_k / v_k − s_k v̇_k / v_k),
            ∂t r_k = r_k (∂t log N_k − Σ_j r_j ∂t log N_j),
            ∂t log N_k = Σ_d (−½ v̇/v − s_k ṁ + ½ s_k² v̇)

with ṁ = ċ a μ and v̇ = 2ċ a² Σ + d(std²)/dt. These are the references the score-FPE residual,
the high-order losses and the likelihood are tested against.

Toy data (seeded with a `torch.Generator`): checkerboard and the 1-D MoG exactly as in
mle_score_ode `toy.py` (docs/maths.md §7.2), a 2-D ring of 8 Gaussians, a standard Gaussian, two rings,
two moons and a swiss roll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .score import ScoreModel
from .sde import SDE

Tensor = torch.Tensor

DATASETS = ("checkerboard", "mog1d", "mog2d", "rings", "moons", "swissroll", "gaussian")

#: Differential entropy (nats) of the unscaled checkerboard: uniform on 8 squares of side 2 in [−4, 4]².
CHECKERBOARD_ENTROPY = math.log(32.0)


@dataclass
class GaussianMixture:
    """Σ_k w_k N(μ_k, diag(var_k)) in D dimensions: weights [K], means [K, D], variances [K, D]."""

    weights: Tensor
    means: Tensor
    variances: Tensor

    def __post_init__(self) -> None:
        self.weights = torch.as_tensor(self.weights)
        self.means = torch.as_tensor(self.means)
        self.variances = torch.as_tensor(self.variances)
        if self.means.dim() == 1:
            self.means = self.means[:, None]
        if self.variances.dim() == 1:
            self.variances = self.variances[:, None].expand_as(self.means).clone()
        if self.variances.shape != self.means.shape:
            self.variances = self.variances.expand_as(self.means).clone()
        self.weights = self.weights / self.weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, dtype=None, device=None) -> "GaussianMixture":
        return GaussianMixture(
            self.weights.to(dtype=dtype, device=device),
            self.means.to(dtype=dtype, device=device),
            self.variances.to(dtype=dtype, device=device),
        )

    def _like(self, x: Tensor) -> "GaussianMixture":
        if self.means.dtype == x.dtype and self.means.device == x.device:
            return self
        return self.to(dtype=x.dtype, device=x.device)

    # --- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
        dtype = dtype or self.means.dtype
        k = torch.multinomial(self.weights.double().cpu(), n, replacement=True, generator=_cpu(generator))
        z = torch.randn(n, self.dim, generator=_cpu(generator), dtype=torch.float64)
        x = self.means.double().cpu()[k] + self.variances.double().cpu()[k].sqrt() * z
        return x.to(dtype=dtype, device=device)

    def moments(self, sde: SDE | None = None, t: float | None = None) -> tuple[Tensor, Tensor]:
        """Mean [D] and covariance [D, D] of q_t (q_0 without an SDE)."""
        w, m, v = self.weights.double(), self.means.double(), self.variances.double()
        if sde is not None and t is not None:
            tt = torch.tensor(float(t), dtype=torch.float64)
            a = sde.mean_coef(tt)
            m, v = a * m, a**2 * v + sde.marginal_var(tt)
        mean = (w[:, None] * m).sum(0)
        second = (w[:, None, None] * (torch.diag_embed(v) + m[:, :, None] * m[:, None, :])).sum(0)
        return mean, second - mean[:, None] * mean[None, :]

    # --- the perturbed law --------------------------------------------------------------------
    def _components(self, x: Tensor, t: Tensor, sde: SDE):
        g = self._like(x)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        a = sde.mean_coef(t)[:, None, None]  # [B,1,1]
        var = sde.marginal_var(t)[:, None, None]
        m = a * g.means[None]  # [B,K,D]
        v = a**2 * g.variances[None] + var
        diff = x[:, None, :] - m
        s_k = -diff / v
        log_n = -0.5 * (torch.log(2 * math.pi * v) + diff**2 / v).sum(-1)  # [B,K]
        ell = torch.log(g.weights)[None] + log_n
        return t, g, a, m, v, s_k, ell

    def log_prob(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """log q_t(x), [B]."""
        *_, ell = self._components(x, t, sde)
        return torch.logsumexp(ell, dim=1)

    def log_prob0(self, x: Tensor) -> Tensor:
        """log q_0(x) of the unperturbed mixture, [B]."""
        g = self._like(x)
        diff = x[:, None, :] - g.means[None]
        log_n = -0.5 * (torch.log(2 * math.pi * g.variances[None]) + diff**2 / g.variances[None]).sum(-1)
        return torch.logsumexp(torch.log(g.weights)[None] + log_n, dim=1)

    def score(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """∇x log q_t(x), [B, D]."""
        _, _, _, _, _, s_k, ell = self._components(x, t, sde)
        r = torch.softmax(ell, dim=1)
        return (r[..., None] * s_k).sum(1)

    def _second(self, x: Tensor, t: Tensor, sde: SDE):
        _, _, _, _, v, s_k, ell = self._components(x, t, sde)
        r = torch.softmax(ell, dim=1)
        s = (r[..., None] * s_k).sum(1)
        jac = (r[..., None, None] * (torch.diag_embed(-1.0 / v) + s_k[..., :, None] * s_k[..., None, :])).sum(1)
        jac = jac - s[:, :, None] * s[:, None, :]
        return r, v, s_k, s, jac

    def jacobian(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """∇x s = ∇² log q_t, [B, D, D] (symmetric)."""
        return self._second(x, t, sde)[-1]

    def divergence(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """∇·s = Δ log q_t, [B]."""
        r, v, s_k, s, _ = self._second(x, t, sde)
        a_k = (-1.0 / v).sum(-1) + (s_k**2).sum(-1)
        return (r * a_k).sum(1) - (s**2).sum(-1)

    def grad_div(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """∇x(∇·s), [B, D]."""
        r, v, s_k, s, jac = self._second(x, t, sde)
        a_k = (-1.0 / v).sum(-1) + (s_k**2).sum(-1)
        term = (s_k - s[:, None, :]) * a_k[..., None] - 2 * s_k / v
        return (r[..., None] * term).sum(1) - 2 * torch.einsum("bij,bj->bi", jac, s)

    def dt_score(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """∂t s at fixed x, [B, D]."""
        t, g, a, m, v, s_k, ell = self._components(x, t, sde)
        cdot = sde.log_mean_coef_dt(t)[:, None, None]
        mdot = cdot * m
        vdot = 2 * cdot * a**2 * g.variances[None] + sde.marginal_var_dt(t)[:, None, None]
        r = torch.softmax(ell, dim=1)
        dlogn = (-0.5 * vdot / v - s_k * mdot + 0.5 * s_k**2 * vdot).sum(-1)  # [B,K]
        dr = r * (dlogn - (r * dlogn).sum(1, keepdim=True))
        ds_k = mdot / v - s_k * vdot / v
        return (dr[..., None] * s_k + r[..., None] * ds_k).sum(1)

    def fpe_rhs(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """Right-hand side of the score FPE in closed form:
        ∇[(g²/2)(∇·s + ‖s‖²) − ⟨f, s⟩] = (g²/2)(∇(∇·s) + 2Js) − ċ(s + Jᵀx)."""
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        s = self.score(x, t, sde)
        jac = self.jacobian(x, t, sde)
        g2 = sde.g2(t)[:, None]
        cdot = sde.log_mean_coef_dt(t)[:, None]
        js = torch.einsum("bij,bj->bi", jac, s)
        jtx = torch.einsum("bji,bj->bi", jac, x)
        return 0.5 * g2 * (self.grad_div(x, t, sde) + 2 * js) - cdot * (s + jtx)

    def score_model(self, sde: SDE) -> "MixtureScore":
        return MixtureScore(self, sde)


class MixtureScore(ScoreModel):
    """The exact score of a perturbed Gaussian mixture as a `ScoreModel`."""

    def __init__(self, mixture: GaussianMixture, sde: SDE):
        self.mixture = mixture
        self.sde = sde

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        shape = x.shape
        return self.mixture.score(x.reshape(shape[0], -1), t, self.sde).reshape(shape)

    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        return self.mixture.log_prob(x.reshape(x.shape[0], -1), t, self.sde)


class PerturbedScore(ScoreModel):
    """s(x,t) + δ(x,t), δ = a·sin(x/std(t) + t)/std(t): a deliberately wrong score for negative
    tests, smooth in x and t and of relative size a against the typical score scale 1/std(t)."""

    def __init__(self, base: ScoreModel, amplitude: float = 0.5):
        self.base = base
        self.sde = base.sde
        self.amplitude = amplitude

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        tt = t.reshape(-1, *([1] * (x.dim() - 1)))
        std = self.sde.marginal_std(tt)
        return self.base.score(x, t) + self.amplitude * torch.sin(x / std + tt) / std


# --- toy data sets -------------------------------------------------------------------------------

def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("toy samplers draw on the CPU; pass a CPU torch.Generator")
    return generator


def mog1d_mixture(dim: int = 1) -> GaussianMixture:
    """docs/maths.md §7.2: means (−2, −6, 4)/7, variances (0.1, 0.1, 1)/49, weights (0.3, 0.3, 0.4); for
    dim > 1 every coordinate shares the component (isotropic, as toy.py's `mog` with dim > 1)."""
    means = torch.tensor([-2.0, -6.0, 4.0], dtype=torch.float64) / 7.0
    var = torch.tensor([0.1, 0.1, 1.0], dtype=torch.float64) / 49.0
    w = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    return GaussianMixture(w, means[:, None].expand(3, dim).clone(), var[:, None].expand(3, dim).clone())


def mog2d_mixture(n: int = 8, radius: float = 3.0, std: float = 0.3) -> GaussianMixture:
    """n equal Gaussians on a circle."""
    ang = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return GaussianMixture(torch.full((n,), 1.0 / n, dtype=torch.float64), means,
                           torch.full((n, 2), std**2, dtype=torch.float64))


def gaussian_mixture(dim: int = 2) -> GaussianMixture:
    return GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, dim, dtype=torch.float64),
                           torch.ones(1, dim, dtype=torch.float64))


def toy_mixture(dataset: str, dim: int | None = None, scale: float | None = None) -> GaussianMixture | None:
    """The exact law of a toy data set when it is a Gaussian mixture (mog1d, mog2d, gaussian),
    else None."""
    scale = 1.0 if scale is None else float(scale)
    if dataset == "mog1d":
        g = mog1d_mixture(dim or 1)
    elif dataset == "mog2d":
        g = mog2d_mixture()
    elif dataset == "gaussian":
        g = gaussian_mixture(dim or 2)
    else:
        return None
    return GaussianMixture(g.weights, g.means * scale, g.variances * scale**2)


def toy_entropy(dataset: str, dim: int | None = None, scale: float | None = None) -> float | None:
    """Differential entropy of the data law in nats where known (the floor of any NLL)."""
    scale = 1.0 if scale is None else float(scale)
    if dataset == "checkerboard":
        return CHECKERBOARD_ENTROPY + 2 * math.log(scale)
    if dataset == "gaussian":
        d = dim or 2
        return 0.5 * d * math.log(2 * math.pi * math.e) + d * math.log(scale)
    return None


def _checkerboard(n: int, gen) -> Tensor:
    x1 = torch.rand(n, generator=gen, dtype=torch.float64) * 4 - 2
    x2 = (torch.rand(n, generator=gen, dtype=torch.float64)
          - torch.randint(0, 2, (n,), generator=gen).double() * 2
          + torch.remainder(torch.floor(x1), 2))
    return torch.stack([x1, x2], 1) * 2


def _rings(n: int, gen, radii: Sequence[float] = (2.0, 4.0), noise: float = 0.1) -> Tensor:
    which = torch.randint(0, len(radii), (n,), generator=gen)
    r = torch.tensor(list(radii), dtype=torch.float64)[which]
    ang = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    pts = torch.stack([r * torch.cos(ang), r * torch.sin(ang)], 1)
    return pts + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)


def _moons(n: int, gen, noise: float = 0.1) -> Tensor:
    upper = torch.randint(0, 2, (n,), generator=gen).bool()
    ang = torch.rand(n, generator=gen, dtype=torch.float64) * math.pi
    x = torch.where(upper, torch.cos(ang), 1 - torch.cos(ang))
    y = torch.where(upper, torch.sin(ang), 0.5 - torch.sin(ang))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 2
    return pts + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)


def _swissroll(n: int, gen, noise: float = 0.25) -> Tensor:
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    th = 1.5 * math.pi * (1 + 2 * u)
    pts = torch.stack([th * torch.cos(th), th * torch.sin(th)], 1) / 3.0
    return pts + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)


def sample_toy(
    dataset: str, n: int, *, dim: int | None = None, scale: float | None = None,
    generator: torch.Generator | None = None, dtype=torch.float32, device=None,
) -> Tensor:
    """n samples [n, dim] of a toy data set (see `DATASETS`)."""
    gen = _cpu(generator)
    mix = toy_mixture(dataset, dim, scale)
    if mix is not None:
        return mix.sample(n, gen, dtype=dtype, device=device)
    if dataset == "checkerboard":
        x = _checkerboard(n, gen)
    elif dataset == "rings":
        x = _rings(n, gen)
    elif dataset == "moons":
        x = _moons(n, gen)
    elif dataset == "swissroll":
        x = _swissroll(n, gen)
    else:
        raise ValueError(f"unknown toy data set {dataset!r}; expected one of {DATASETS}")
    if dim is not None and dim != 2:
        raise ValueError(f"{dataset} is 2-D, got dim={dim}")
    if scale is not None:
        x = x * float(scale)
    return x.to(dtype=dtype, device=device)

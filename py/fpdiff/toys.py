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

The checkerboard (uniform on 8 squares) is closed-form too: each square is a product of
intervals, and an interval U[l, u] pushed through x = a·x0 + std·z has the density
(Φ((x − a·l)/std) − Φ((x − a·u)/std)) / (a(u − l)), so q_t = ⅛ Σ_k Π_d of those factors
(`Checkerboard`); its score is the responsibility-weighted sum of the factors' log-derivatives,
(φ(b) − φ(c)) / (std (Φ(b) − Φ(c))), all in log space (no approximation, any t).

Toy data (seeded with a `torch.Generator`): checkerboard and the 1-D MoG exactly as in
mle_score_ode `toy.py` (docs/maths.md §7.2), a 2-D ring of 8 Gaussians, a standard Gaussian, two rings,
two moons and a swiss roll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .score import ScoreModel
from .sde import SDE

Tensor = torch.Tensor

DATASETS = ("checkerboard", "mog1d", "mog2d", "rings", "moons", "swissroll", "gaussian")
#: Natural dimension of each data set (gaussian: any, default 2).
TOY_DIMS = {"checkerboard": 2, "mog1d": 1, "mog2d": 2, "rings": 2, "moons": 2, "swissroll": 2}

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

    def score_model(self, sde: SDE) -> "LawScore":
        return LawScore(self, sde)


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


class LawScore(ScoreModel):
    """The exact score of a closed-form law (`GaussianMixture`, `Checkerboard`) perturbed by an SDE,
    as a `ScoreModel`."""

    def __init__(self, law: "GaussianMixture | Checkerboard", sde: SDE):
        self.law = law
        self.sde = sde

    @property
    def mixture(self) -> "GaussianMixture | Checkerboard":
        return self.law

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        shape = x.shape
        return self.law.score(x.reshape(shape[0], -1), t, self.sde).reshape(shape)

    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        return self.law.log_prob(x.reshape(x.shape[0], -1), t, self.sde)


MixtureScore = LawScore


def _log1mexp(d: Tensor) -> Tensor:
    """log(1 − e^{−d}) for d > 0, accurate for small and large d (each branch sees only its range,
    so neither produces inf/NaN gradients through `where`)."""
    small = d.clamp(max=math.log(2.0))
    large = d.clamp(min=math.log(2.0))
    return torch.where(d < math.log(2.0), torch.log(-torch.expm1(-small)), torch.log1p(-torch.exp(-large)))


def log_ndtr_diff(b: Tensor, c: Tensor) -> Tensor:
    """log(Φ(b) − Φ(c)) for b > c, stable in both tails: in the right tail it uses the
    reflection Φ(b) − Φ(c) = Φ(−c) − Φ(−b)."""
    right = c > 0
    hi = torch.where(right, -c, b)
    lo = torch.where(right, -b, c)
    lhi, llo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return lhi + _log1mexp(lhi - llo)


@dataclass
class Checkerboard:
    """The checkerboard law of `sample_toy("checkerboard")`: uniform (density 1/(32 s²)) on the 8
    squares [2i, 2i+2)·s × [2j, 2j+2)·s, i, j ∈ {−2, …, 1}, i + j even, inside [−4s, 4s]².

    Perturbed by a linear SDE, x = a x0 + std z, it stays closed-form (module docstring):
    q_t(x) = ⅛ Σ_k Π_d (Φ(b_kd) − Φ(c_kd)) / (a·2s), b = (x − a·lo)/std, c = (x − a·hi)/std.
    """

    scale: float = 1.0

    @property
    def dim(self) -> int:
        return 2

    def to(self, dtype=None, device=None) -> "Checkerboard":
        """Itself: every tensor it makes follows the dtype and device of the points."""
        return self

    def squares(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """Lower and upper corners [8, 2] of the squares."""
        ij = [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0]
        lo = torch.tensor(ij, dtype=dtype, device=device) * 2 * self.scale
        return lo, lo + 2 * self.scale

    def log_prob0(self, x: Tensor) -> Tensor:
        """log q_0(x): −log(32 s²) on the squares, −inf elsewhere, [B]."""
        u = x.double() / self.scale
        inside = (u >= -4).all(-1) & (u < 4).all(-1)
        on = inside & (torch.remainder(torch.floor(u / 2).long().sum(-1), 2) == 0)
        val = -math.log(32.0) - 2 * math.log(self.scale)
        return torch.where(on, torch.full_like(u[:, 0], val), torch.full_like(u[:, 0], -math.inf))

    def _factors(self, x: Tensor, t: Tensor, sde: SDE) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(log f, log(Φ(b) − Φ(c)), b, c: [B, 8, 2]; std [B, 1, 1]) with f_kd the factor of
        square k along axis d."""
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        lo, hi = self.squares(x.dtype, x.device)
        a = sde.mean_coef(t)[:, None, None]
        std = sde.marginal_std(t)[:, None, None]
        xx = x[:, None, :]
        b = (xx - a * lo[None]) / std
        c = (xx - a * hi[None]) / std
        log_mass = log_ndtr_diff(b, c)
        return log_mass - torch.log(a * 2 * self.scale), log_mass, b, c, std

    def log_prob(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """log q_t(x), [B]."""
        logf = self._factors(x, t, sde)[0]
        return torch.logsumexp(logf.sum(-1), dim=1) - math.log(8.0)

    def score(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """∇x log q_t(x) = Σ_k r_k ∂_d log f_kd with ∂_d log f = (φ(b) − φ(c)) / (std (Φ(b) − Φ(c))),
        r = softmax_k Σ_d log f_kd; [B, 2]."""
        logf, log_mass, b, c, std = self._factors(x, t, sde)
        r = torch.softmax(logf.sum(-1), dim=1)  # [B, 8]
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        dlog = (torch.exp(-0.5 * b**2 - half_log_2pi - log_mass) - torch.exp(-0.5 * c**2 - half_log_2pi - log_mass)) / std
        return (r[..., None] * dlog).sum(1)

    def score_model(self, sde: SDE) -> LawScore:
        return LawScore(self, sde)

    def support_fraction(self, lo: Tensor, hi: Tensor) -> Tensor:
        """Share of each axis-aligned cell [lo, hi] (rows of [N, 2]) that lies on the squares, [N]."""
        slo, shi = self.squares(lo.dtype, lo.device)
        overlap = (torch.minimum(hi[:, None, :], shi[None]) - torch.maximum(lo[:, None, :], slo[None])).clamp_min(0)
        return overlap.prod(-1).sum(-1) / (hi - lo).prod(-1)


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


# --- truth of a toy data set by name -------------------------------------------------------------

STREAM_ENTROPY = 102  # seed stream of the Monte-Carlo entropy (independent of training and test draws)


def toy_law(dataset: str, dim: int | None = None, scale: float | None = None) -> "GaussianMixture | Checkerboard | None":
    """The exact law of a toy data set where its perturbed score is closed-form (mixtures and the
    checkerboard), else None."""
    if dataset == "checkerboard":
        if dim not in (None, 2):
            raise ValueError(f"checkerboard is 2-D, got dim={dim}")
        return Checkerboard(1.0 if scale is None else float(scale))
    return toy_mixture(dataset, dim, scale)


def checkerboard_log_prob(x: Tensor, scale: Optional[float] = None) -> Tensor:
    """log q_0 of the checkerboard: −log(32 s²) on the squares, −inf elsewhere (`Checkerboard.log_prob0`)."""
    return Checkerboard(1.0 if scale is None else float(scale)).log_prob0(x)


def true_log_prob(dataset: str, x: Tensor, dim: Optional[int] = None, scale: Optional[float] = None) -> Optional[Tensor]:
    """The data law's log-density log q_0(x) where it is known in closed form (else None)."""
    law = toy_law(dataset, dim, scale)
    return None if law is None else law.log_prob0(x.double())


def entropy_floor(dataset: str, dim: Optional[int] = None, scale: Optional[float] = None,
                  seed: int = 0, n: int = 1_000_000) -> tuple[Optional[float], Optional[str]]:
    """The differential entropy H(q_0) in nats — the floor of any expected NLL: exact where
    `toy_entropy` knows it, else a Monte-Carlo mean of −log q_0 over n samples for the mixtures,
    else None. Returns (value, "exact" | "monte-carlo" | None)."""
    from .data import step_seed  # data imports this module

    h = toy_entropy(dataset, dim, scale)
    if h is not None:
        return float(h), "exact"
    mix = toy_mixture(dataset, dim, scale)
    if mix is None:
        return None, None
    g = torch.Generator().manual_seed(step_seed(seed, 0, STREAM_ENTROPY))
    x = mix.sample(n, g, dtype=torch.float64)
    return float(-mix.log_prob0(x).mean()), "monte-carlo"


def density_grid(dataset: str, n: int, *, dim: int | None = None, scale: float | None = None,
                 lo: Sequence[float] | None = None, hi: Sequence[float] | None = None,
                 generator: torch.Generator | None = None) -> list[Tensor]:
    """Cell centres (one float64 axis per dimension) of a uniform grid of ≈ n cells per axis, for
    density pictures and masses (a cell's mass is density × cell area).

    Default bounds: for the checkerboard, cells of side 8s/m (m a multiple of 4) that tile
    [−4s, 4s]² exactly — so each cell lies wholly on or off a square — plus ≈ 5 % margin of whole
    cells (n becomes m + 2·margin); otherwise the range of 20 000 samples ± 5 %. Given `lo` /
    `hi` (one value per axis): n cells between them."""
    d = int(dim or TOY_DIMS.get(dataset) or 2)
    if dataset == "checkerboard" and lo is None and hi is None:
        s = 1.0 if scale is None else float(scale)
        m = max(4, 4 * int(round(n / 1.1 / 4)))
        pad = max(0, (n - m) // 2)
        ext = 4 * s + pad * 8 * s / m
        lo, hi, n = [-ext] * d, [ext] * d, m + 2 * pad
    elif lo is None or hi is None:
        if dataset == "checkerboard":
            s = 1.0 if scale is None else float(scale)
            a_lo, a_hi = [-4.4 * s] * d, [4.4 * s] * d
        else:
            x = sample_toy(dataset, 20000, dim=d, scale=scale, dtype=torch.float64,
                           generator=generator or torch.Generator().manual_seed(0))
            a, b = x.min(0).values, x.max(0).values
            margin = 0.05 * (b - a)
            a_lo, a_hi = (a - margin).tolist(), (b + margin).tolist()
        lo = a_lo if lo is None else lo
        hi = a_hi if hi is None else hi
    if len(lo) != d or len(hi) != d:
        raise ValueError(f"grid bounds need {d} value(s) per end, got {len(lo)} and {len(hi)}")
    axes = []
    for i in range(d):
        if not lo[i] < hi[i]:
            raise ValueError(f"grid: lower bound {lo[i]} is not below the upper bound {hi[i]} on axis {i}")
        w = (hi[i] - lo[i]) / n
        axes.append(lo[i] + w * (torch.arange(n, dtype=torch.float64) + 0.5))
    return axes


def grid_points(axes: Sequence[Tensor]) -> Tensor:
    """The grid's points [N, D] in the layout of the density pictures: 1-D in order; 2-D rows follow
    y (point i·nx + j is (x[j], y[i]), so a [ny, nx] reshape is the image)."""
    if len(axes) == 1:
        return axes[0][:, None]
    if len(axes) != 2:
        raise ValueError("grids are 1-D or 2-D")
    yy, xx = torch.meshgrid(axes[1], axes[0], indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def cell_bounds(axes: Sequence[Tensor]) -> tuple[Tensor, Tensor, float]:
    """Lower and upper corners [N, D] of the cells around `grid_points(axes)`, and the cell volume."""
    widths = [float(a[1] - a[0]) if a.numel() > 1 else 1.0 for a in axes]
    pts = grid_points(axes)
    half = torch.tensor(widths, dtype=pts.dtype) / 2
    return pts - half, pts + half, math.prod(widths)


STREAM_TEST_POINTS = 201  # seed stream of evaluation points (independent of every training stream)


def test_points(dataset: str, n: int, *, seed: int = 0, dim: int | None = None, scale: float | None = None,
                dtype=torch.float32) -> Tensor:
    """n fresh evaluation points of a toy data set, drawn from `seed` on a stream no training batch
    uses: every model evaluated with the same (dataset, n, seed) sees the same points."""
    from .data import step_seed  # data imports this module

    g = torch.Generator().manual_seed(step_seed(seed, 0, STREAM_TEST_POINTS))
    return sample_toy(dataset, n, dim=dim, scale=scale, generator=g, dtype=dtype)

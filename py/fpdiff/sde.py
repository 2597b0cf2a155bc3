"""Forward SDEs of Score SDE (Song et al. 2021, §3.4 and Appendix B): VE, VP and sub-VP.

All three are linear SDEs dx = ċ(t)·x dt + g(t) dw with Gaussian transition kernels
x_t | x_0 ~ N(e^{c(t)} x_0, std(t)² I). Writing them through c(t) = log mean coefficient gives
the drift f(x,t) = ċ(t)x, ∇·f = D·ċ(t) and d(std²)/dt = 2ċ·std² + g², which the closed-form
mixture scores (`toys.py`) and the score Fokker–Planck residual (`losses/score_fpe.py`) use.

Time t is a tensor of shape [B] (or a scalar tensor, broadcast); x has shape [B, ...].
Every function of t is made of differentiable elementary operations, so forward-mode AD in t
(∂t s in the score-FPE) is exact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

Tensor = torch.Tensor
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample tensor [B] (or scalar) so it broadcasts against x [B, ...]."""
    if v.dim() == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))


def _as_t(t: Tensor | float, like: Tensor | None = None) -> Tensor:
    if isinstance(t, Tensor):
        return t
    if like is not None:
        return torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return torch.as_tensor(t, dtype=torch.get_default_dtype())


class SDE(ABC):
    """Common interface (docs/contracts.md §2). Subclasses define c(t), ċ(t), std(t), g²(t)."""

    kind: str = ""
    T: float = 1.0

    def __init__(self, N: int = 1000):
        self.N = int(N)

    # --- per-SDE primitives -------------------------------------------------------------------
    @abstractmethod
    def log_mean_coef(self, t: Tensor) -> Tensor:
        """c(t), so that mean(x0, t) = e^{c(t)} x0."""

    @abstractmethod
    def log_mean_coef_dt(self, t: Tensor) -> Tensor:
        """ċ(t); the drift is f(x,t) = ċ(t)·x."""

    @abstractmethod
    def marginal_std(self, t: Tensor) -> Tensor:
        ...

    @abstractmethod
    def g2(self, t: Tensor) -> Tensor:
        """g(t)², the squared diffusion coefficient."""

    @abstractmethod
    def prior_std(self) -> float:
        ...

    @abstractmethod
    def label(self, t: Tensor) -> Tensor:
        """Time label fed to the original networks: VE σ(t), VP / subVP 999·t (docs/maths.md §3)."""

    # --- derived quantities -------------------------------------------------------------------
    def mean_coef(self, t: Tensor) -> Tensor:
        return torch.exp(self.log_mean_coef(t))

    def marginal_var(self, t: Tensor) -> Tensor:
        return self.marginal_std(t) ** 2

    def marginal_var_dt(self, t: Tensor) -> Tensor:
        """d std(t)²/dt = 2ċ(t)·std(t)² + g(t)² (the variance ODE of a linear SDE)."""
        return 2 * self.log_mean_coef_dt(t) * self.marginal_var(t) + self.g2(t)

    def diffusion(self, t: Tensor) -> Tensor:
        """g(t)."""
        return torch.sqrt(self.g2(t))

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return bcast(self.log_mean_coef_dt(t), x) * x

    def div_drift(self, x: Tensor, t: Tensor) -> Tensor:
        """∇·f per sample, [B]: D·ċ(t) (independent of x)."""
        return (x[0].numel() * self.log_mean_coef_dt(t)).expand(x.shape[0])

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(f(x,t), g(t)) as Score SDE's `sde()`."""
        return self.drift(x, t), self.diffusion(t)

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(mean(x0,t) [B,...], std(t) [B])."""
        return bcast(self.mean_coef(t), x0) * x0, self.marginal_std(t)

    def perturb(self, x0: Tensor, t: Tensor, z: Tensor) -> Tensor:
        mean, std = self.marginal(x0, t)
        return mean + bcast(std, x0) * z

    def prior_sample(
        self, shape, *, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> Tensor:
        z = torch.randn(*shape, generator=generator, device=device, dtype=dtype)
        return z * self.prior_std()

    def prior_logp(self, z: Tensor) -> Tensor:
        """log N(z; 0, σ_T² I) per sample, [B]."""
        d = z[0].numel()
        s2 = self.prior_std() ** 2
        sq = z.reshape(z.shape[0], -1).pow(2).sum(1)
        return -0.5 * d * math.log(2 * math.pi * s2) - sq / (2 * s2)

    def prior_score(self, z: Tensor) -> Tensor:
        return -z / self.prior_std() ** 2

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Euler–Maruyama discretisation (f·Δt, g·√Δt) with Δt = 1/N; VE and VP override it."""
        dt = 1.0 / self.N
        f, g = self.sde(x, t)
        return f * dt, g * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        return ReverseSDE(self, score_fn, probability_flow)

    def ode_drift(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Probability-flow drift f − ½g²s (Song et al. 2021, eq. 13)."""
        return self.drift(x, t) - 0.5 * bcast(self.g2(t), x) * score

    # --- importance sampling of t for likelihood weighting --------------------------------------
    @abstractmethod
    def _cum_weight(self, t: Tensor) -> Tensor:
        """An antiderivative W(t) of the proposal density's unnormalised form g²(t)/std(t)²."""

    def importance_norm(self, eps: float = 1e-5) -> float:
        """Z = ∫_eps^T g²/std² dt, the normaliser of the importance density."""
        t = torch.tensor([eps, self.T], dtype=torch.float64)
        w = self._cum_weight(t)
        return float(w[1] - w[0])

    def importance_sample_t(
        self, n: int, eps: float = 1e-5, *, generator: torch.Generator | None = None,
        device=None, dtype=None,
    ) -> Tensor:
        """t ~ p(t) ∝ g(t)²/std(t)² on [eps, T] (score_flow's variance reduction for likelihood
        weighting, Song et al. 2021b §4.1) by inverting the cumulative weight."""
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        t = self._inverse_cum_weight(u, eps)
        return t.to(dtype or torch.get_default_dtype())

    def _inverse_cum_weight(self, u: Tensor, eps: float) -> Tensor:
        # Generic bisection on the monotone W; 60 halvings reach float64 resolution on [eps, T].
        te = torch.tensor([eps, self.T], dtype=torch.float64, device=u.device)
        w0, w1 = self._cum_weight(te)
        target = w0 + u * (w1 - w0)
        lo = torch.full_like(u, eps)
        hi = torch.full_like(u, self.T)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = self._cum_weight(mid) <= target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    @abstractmethod
    def config(self) -> dict[str, Any]:
        ...


class VESDE(SDE):
    """dx = √(d σ²/dt) dw, σ(t) = σ_min (σ_max/σ_min)^t (Song et al. 2021, eq. 30)."""

    kind = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.discrete_sigmas = torch.exp(
            torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.N, dtype=torch.float64)
        )

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def log_mean_coef(self, t: Tensor) -> Tensor:
        return 0.0 * t  # keeps t's graph, so derivatives in t are 0 rather than missing

    def log_mean_coef_dt(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def marginal_std(self, t: Tensor) -> Tensor:
        return self.sigma(t)

    def g2(self, t: Tensor) -> Tensor:
        return self.sigma(t) ** 2 * (2 * self._log_ratio)

    def prior_std(self) -> float:
        return self.sigma_max

    def label(self, t: Tensor) -> Tensor:
        return self.sigma(t)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """SMLD discretisation: G = √(σ_i² − σ_{i−1}²) on the geometric grid, f = 0."""
        idx = (t * (self.N - 1) / self.T).long()
        sig = self.discrete_sigmas.to(device=t.device)
        s = sig[idx]
        prev = torch.where(idx == 0, torch.zeros_like(s), sig[(idx - 1).clamp(min=0)])
        return torch.zeros_like(x), torch.sqrt(s**2 - prev**2).to(t.dtype)

    def _cum_weight(self, t: Tensor) -> Tensor:
        return 2 * self._log_ratio * t  # g²/σ² is constant: the proposal is uniform

    def _inverse_cum_weight(self, u: Tensor, eps: float) -> Tensor:
        return eps + u * (self.T - eps)

    def config(self) -> dict[str, Any]:
        return {"kind": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "N": self.N}


#: How VP / subVP compute std(t) (and subVP's g² discount): see `_BetaSDE`.
STD_FORMULAS = ("stable", "original", "scoreflow")

#: score_flow's switch point for its first-order branch: |c(t)| ≤ 1e-3 (t < 0.01002 for β 0.1…20).
SCOREFLOW_BRANCH = 1e-3


class _BetaSDE(SDE):
    """VP and subVP share β(t), c(t) and the DDPM discretisation.

    `std_formula` chooses how 1 − e^{2c(t)} (and subVP's g² discount 1 − e^{−2∫β}) is computed:

    - "stable": −expm1(2c), accurate in any dtype (fpdiff's default).
    - "original": 1 − exp(2c) in the working dtype, as Score SDE and FP-Diffusion compute it; in
      float32 near t = ε the cancellation leaves std off by up to ~1 % (reproduces their losses).
    - "scoreflow": score_flow / mle_score_ode's high-precision branch: where |c| ≤ 1e-3 the
      first-order forms 1 − e^{2c} ≈ −2c and mean factor e^c ≈ 1 + c (the same for subVP's
      discount, −exponent), else 1 − exp(·) as "original".
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000, std_formula: str = "stable"):
        super().__init__(N)
        if not 0 < beta_min <= beta_max:
            raise ValueError(f"{self.kind} needs 0 < beta_min <= beta_max, got {beta_min} and {beta_max}")
        if std_formula not in STD_FORMULAS:
            raise ValueError(f"std_formula must be one of {', '.join(STD_FORMULAS)}; got {std_formula!r}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.std_formula = std_formula
        # DDPM's discrete β_i = β(i/(N−1))/N and α_i = 1 − β_i, used by the VP discretisation and
        # by the Langevin corrector's step size for VP and subVP.
        self.discrete_betas = torch.linspace(beta_min / N, beta_max / N, N, dtype=torch.float64)
        self.alphas = 1.0 - self.discrete_betas

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coef(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def log_mean_coef_dt(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def mean_coef(self, t: Tensor) -> Tensor:
        c = self.log_mean_coef(t)
        if self.std_formula == "scoreflow":
            return torch.where(c.abs() <= SCOREFLOW_BRANCH, 1 + c, torch.exp(c))
        return torch.exp(c)

    def _one_minus_exp(self, a: Tensor, branch: float) -> Tensor:
        """1 − e^{a} (a ≤ 0) by the chosen formula; "scoreflow" takes −a where |a| ≤ `branch`."""
        if self.std_formula == "stable":
            return -torch.expm1(a)
        plain = 1 - torch.exp(a)
        if self.std_formula == "original":
            return plain
        return torch.where(a.abs() <= branch, -a, plain)

    def _u(self, t: Tensor) -> Tensor:
        """u(t) = −2c(t) = ∫_0^t β, so that e^{2c} = e^{−u}."""
        return -2 * self.log_mean_coef(t)

    def _one_minus_e2c(self, t: Tensor) -> Tensor:
        """1 − e^{2c(t)}; score_flow's branch is |c| ≤ 1e-3, i.e. |2c| ≤ 2e-3."""
        return self._one_minus_exp(2 * self.log_mean_coef(t), 2 * SCOREFLOW_BRANCH)

    def prior_std(self) -> float:
        return 1.0

    def label(self, t: Tensor) -> Tensor:
        return 999.0 * t

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "beta_min": self.beta_min, "beta_max": self.beta_max, "N": self.N,
                "std_formula": self.std_formula}


class VPSDE(_BetaSDE):
    """dx = −½β(t)x dt + √β(t) dw (Song et al. 2021, eq. 32)."""

    kind = "vp"

    def marginal_std(self, t: Tensor) -> Tensor:
        # "stable": −expm1(−u) = 1 − e^{2c} without the cancellation near t = 0 that the originals
        # either suffer (float32) or patch with a first-order branch for |c| ≤ 1e-3.
        return torch.sqrt(self._one_minus_e2c(t))

    def marginal_var(self, t: Tensor) -> Tensor:
        return self._one_minus_e2c(t)

    def g2(self, t: Tensor) -> Tensor:
        return self.beta(t)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """DDPM discretisation: f = √α_i x − x, G = √β_i (Song et al. 2021, Appendix E)."""
        idx = (t * (self.N - 1) / self.T).long()
        beta = self.discrete_betas.to(t.device)[idx].to(t.dtype)
        alpha = self.alphas.to(t.device)[idx].to(t.dtype)
        return bcast(torch.sqrt(alpha), x) * x - x, torch.sqrt(beta)

    def _cum_weight(self, t: Tensor) -> Tensor:
        # g²/std² = u'/(1 − e^{−u}) = d/dt log(e^u − 1)
        u = self._u(t)
        return torch.log(torch.expm1(u))

    def _inverse_cum_weight(self, u01: Tensor, eps: float) -> Tensor:
        te = torch.tensor([eps, self.T], dtype=torch.float64, device=u01.device)
        w0, w1 = self._cum_weight(te)
        w = w0 + u01 * (w1 - w0)
        # log(e^u − 1) = w  ⇒  u = w + log1p(e^{−w}); then solve ½Δβ t² + β_min t = u for t ≥ 0.
        u = w + torch.log1p(torch.exp(-w))
        a = 0.5 * (self.beta_max - self.beta_min)
        b = self.beta_min
        if a == 0:
            return u / b
        return 2 * u / (b + torch.sqrt(b * b + 4 * a * u))


class SubVPSDE(_BetaSDE):
    """dx = −½β(t)x dt + √(β(t)(1 − e^{−2∫β})) dw (Song et al. 2021, eq. 34)."""

    kind = "subvp"

    def marginal_std(self, t: Tensor) -> Tensor:
        return self._one_minus_e2c(t)

    def g2(self, t: Tensor) -> Tensor:
        # the discount 1 − e^{−2∫β}; score_flow branches on |−2∫β| ≤ 1e-3 here
        return self.beta(t) * self._one_minus_exp(-2 * self._u(t), SCOREFLOW_BRANCH)

    def _cum_weight(self, t: Tensor) -> Tensor:
        # g²/std² = u'(1 + e^{−u})/(1 − e^{−u}); an antiderivative is u + 2 log(1 − e^{−u}).
        u = self._u(t)
        return u + 2 * torch.log(-torch.expm1(-u))


_KINDS = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}


def make_sde(cfg: Any) -> SDE:
    """The SDE an experiment's ``sde`` section describes (a generated ``VESDEConfig`` /
    ``VPSDEConfig`` / ``SubVPSDEConfig``); an SDE is returned as it is."""
    if isinstance(cfg, SDE):
        return cfg
    if cfg.kind == "ve":
        return VESDE(cfg.sigma_min, cfg.sigma_max, cfg.N)
    if cfg.kind in _KINDS:
        return _KINDS[cfg.kind](cfg.beta_min, cfg.beta_max, cfg.N, std_formula=cfg.std_formula)
    raise ValueError(f"unknown SDE kind {cfg.kind!r}; expected one of {sorted(_KINDS)}")


@dataclass
class ReverseSDE:
    """Reverse-time SDE dx = [f − g²s]dt + g dw̄, or with `probability_flow` the ODE
    dx = [f − ½g²s]dt (Song et al. 2021, eqs. 6 and 13)."""

    forward: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    @property
    def N(self) -> int:
        return self.forward.N

    @property
    def T(self) -> float:
        return self.forward.T

    def _coef(self) -> float:
        return 0.5 if self.probability_flow else 1.0

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        f, g = self.forward.sde(x, t)
        drift = f - bcast(g**2, x) * self.score_fn(x, t) * self._coef()
        return drift, (torch.zeros_like(g) if self.probability_flow else g)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        f, G = self.forward.discretize(x, t)
        rev_f = f - bcast(G**2, x) * self.score_fn(x, t) * self._coef()
        return rev_f, (torch.zeros_like(G) if self.probability_flow else G)

"""SDEs (docs/maths.md §2): marginals against simulation, prior density, importance sampling, discretisation."""

import json
import math
from pathlib import Path

import pytest
import torch

from fpdiff.config import SubVPSDEConfig, VESDEConfig, VPSDEConfig

from fpdiff.sde import SubVPSDE, VESDE, VPSDE, make_sde
from fpdiff.score import FunctionScore

from _numerics_helpers import SDE_KINDS, gen, sde_of


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_marginals_match_euler_maruyama_simulation(kind):
    sde = sde_of(kind)
    g = gen(1)
    n, steps, t_end = 20000, 400, 0.6
    x0 = 1.0 + 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    x = x0.clone()
    dt = t_end / steps
    for i in range(steps):
        t = torch.full((n,), (i + 0.5) * dt, dtype=torch.float64)
        f, gt = sde.sde(x, t)
        x = x + f * dt + gt[:, None] * math.sqrt(dt) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    tt = torch.tensor(t_end, dtype=torch.float64)
    a, std = sde.mean_coef(tt), sde.marginal_std(tt)
    mean_ref = a * 1.0
    var_ref = a**2 * 0.25 + std**2
    se_mean = math.sqrt(var_ref / n)
    assert abs(float(x.mean()) - float(mean_ref)) < 5 * se_mean
    assert abs(float(x.var()) / float(var_ref) - 1) < 0.03
    # conditional moments: the per-path mean coefficient and std
    mean, s = sde.marginal(x0, tt.expand(n))
    resid = (x - mean) / s[:, None]
    assert abs(float(resid.mean())) < 0.03 and abs(float(resid.std()) - 1) < 0.03


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_variance_ode_and_time_derivatives(kind):
    sde = sde_of(kind)
    t = torch.linspace(1e-4, 1.0, 50, dtype=torch.float64).requires_grad_(True)
    var = sde.marginal_var(t)
    dvar = torch.autograd.grad(var.sum(), t)[0]
    torch.testing.assert_close(sde.marginal_var_dt(t), dvar, rtol=1e-9, atol=1e-12)
    c = sde.log_mean_coef(t)
    dc = torch.autograd.grad(c.sum(), t)[0]
    torch.testing.assert_close(sde.log_mean_coef_dt(t), dc)


def test_closed_forms_of_facts_table():
    t = torch.tensor([1e-5, 0.3, 1.0], dtype=torch.float64)
    ve = VESDE()
    sig = 0.01 * (50 / 0.01) ** t
    torch.testing.assert_close(ve.marginal_std(t), sig)
    torch.testing.assert_close(ve.g2(t), sig**2 * 2 * math.log(5000))
    torch.testing.assert_close(ve.label(t), sig)
    vp, svp = VPSDE(), SubVPSDE()
    c = -0.25 * t**2 * 19.9 - 0.5 * t * 0.1
    torch.testing.assert_close(vp.mean_coef(t), torch.exp(c))
    torch.testing.assert_close(vp.marginal_std(t), torch.sqrt(1 - torch.exp(2 * c)))
    torch.testing.assert_close(svp.marginal_std(t), 1 - torch.exp(2 * c))
    beta = 0.1 + t * 19.9
    torch.testing.assert_close(vp.g2(t), beta)
    torch.testing.assert_close(svp.g2(t), beta * (1 - torch.exp(-2 * 0.1 * t - 19.9 * t**2)))
    torch.testing.assert_close(vp.label(t), 999 * t)
    assert make_sde(VESDEConfig(sigma_max=10.0)).sigma_max == 10.0
    assert make_sde(SubVPSDEConfig(beta_max=5.0, N=10)).N == 10


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_prior_logp_normalises(kind):
    sde = sde_of(kind)
    s = sde.prior_std()
    grid = torch.linspace(-8 * s, 8 * s, 801, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    z = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    dens = sde.prior_logp(z).exp()
    h = float(grid[1] - grid[0])
    assert abs(float(dens.sum()) * h * h - 1) < 1e-6
    # prior samples have the prior's scale
    x = sde.prior_sample((20000, 3), generator=gen(0), dtype=torch.float64)
    assert abs(float(x.std()) / s - 1) < 0.02


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_importance_sampling_of_t(kind):
    sde = sde_of(kind)
    eps = 1e-5
    t = sde.importance_sample_t(40000, eps, generator=gen(3), dtype=torch.float64)
    assert float(t.min()) >= eps and float(t.max()) <= 1.0
    # the empirical CDF equals ∫ g²/std² normalised, checked by numerical quadrature
    # geometric grid: the subVP density behaves like 2/t near 0
    grid = eps * (1.0 / eps) ** torch.linspace(0.0, 1.0, 200001, dtype=torch.float64)
    dens = sde.g2(grid) / sde.marginal_var(grid)
    z = float(torch.trapezoid(dens, grid))
    assert abs(z / sde.importance_norm(eps) - 1) < 1e-5
    for q in (0.05, 0.3, 0.7):
        emp = float((t <= q).double().mean())
        mask = grid <= q
        ref = float(torch.trapezoid(dens[mask], grid[mask])) / z
        assert abs(emp - ref) < 0.01, (q, emp, ref)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_reverse_sde_and_probability_flow(kind):
    sde = sde_of(kind)
    x = torch.randn(5, 3, dtype=torch.float64, generator=gen(0))
    t = torch.rand(5, dtype=torch.float64, generator=gen(1))
    score = FunctionScore(lambda xx, tt: -xx * 2.0, sde)
    f, g = sde.sde(x, t)
    drift, diff = sde.reverse(score.score).sde(x, t)
    torch.testing.assert_close(drift, f - (g**2)[:, None] * (-2 * x))
    torch.testing.assert_close(diff, g)
    drift, diff = sde.reverse(score.score, probability_flow=True).sde(x, t)
    torch.testing.assert_close(drift, f - 0.5 * (g**2)[:, None] * (-2 * x))
    torch.testing.assert_close(drift, sde.ode_drift(x, t, -2 * x))
    assert float(diff.abs().max()) == 0.0
    torch.testing.assert_close(sde.div_drift(x, t), 3 * sde.log_mean_coef_dt(t))


def test_discretisations_follow_the_originals():
    ve = VESDE(N=10)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    x = torch.ones(3, 2, dtype=torch.float64)
    f, G = ve.discretize(x, t)
    sig = torch.exp(torch.linspace(math.log(0.01), math.log(50), 10, dtype=torch.float64))
    idx = (t * 9).long()
    prev = torch.where(idx == 0, torch.zeros(3, dtype=torch.float64), sig[(idx - 1).clamp(min=0)])
    torch.testing.assert_close(G, torch.sqrt(sig[idx] ** 2 - prev**2))
    assert float(f.abs().max()) == 0
    vp = VPSDE(N=100)
    f, G = vp.discretize(x, t)
    betas = torch.linspace(0.1 / 100, 20 / 100, 100, dtype=torch.float64)
    idx = (t * 99).long()
    torch.testing.assert_close(G, torch.sqrt(betas[idx]))
    torch.testing.assert_close(f, torch.sqrt(1 - betas[idx])[:, None] * x - x)
    svp = SubVPSDE(N=10)
    f, G = svp.discretize(x, t)
    torch.testing.assert_close(f, svp.drift(x, t) / 10)
    torch.testing.assert_close(G, svp.diffusion(t) * math.sqrt(0.1))


# --- std(t) formulas of VP / subVP (sde.stdFormula) ---------------------------------------------

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "reference"


def _c_as_the_originals(t):
    """c(t) written as Score SDE's `marginal_prob` writes it (β 0.1 … 20)."""
    return -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1


def _truth(t):
    """1 − e^{2c(t)} in float64 from the float32 times."""
    return -torch.expm1(2 * _c_as_the_originals(t.double()))


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE])
def test_original_std_is_the_originals_float32_formula_and_stable_is_accurate(cls):
    """"original" is Score SDE / FP-Diffusion's 1 − exp(2c) bit for bit in float32 (off the
    float64 truth by up to ~1 % at t ≈ 1e-5); "stable" is within float32 rounding of the truth."""
    t = torch.logspace(-5, 0, 200, dtype=torch.float32)
    one_minus = 1.0 - torch.exp(2.0 * _c_as_the_originals(t))
    want = torch.sqrt(one_minus) if cls is VPSDE else one_minus
    exact = torch.sqrt(_truth(t)) if cls is VPSDE else _truth(t)
    orig, stable = cls(std_formula="original"), cls(std_formula="stable")
    assert torch.equal(orig.marginal_std(t), want)
    err_orig = (orig.marginal_std(t).double() / exact - 1).abs()
    err_stable = (stable.marginal_std(t).double() / exact - 1).abs()
    assert float(err_orig[t < 2e-5].max()) > 1e-3  # the float32 cancellation the switch reproduces
    assert float(err_orig.max()) < 0.05
    assert float(err_stable.max()) < 1e-6
    # in float64 the cancellation is 1e-9 at worst: both formulas agree
    t64 = t.double()
    torch.testing.assert_close(orig.marginal_std(t64), stable.marginal_std(t64), rtol=1e-8, atol=0)
    torch.testing.assert_close(orig.marginal_var(t64), stable.marginal_std(t64) ** 2, rtol=1e-8,
                               atol=0)


def test_original_subvp_diffusion_uses_the_originals_discount():
    t = torch.logspace(-5, 0, 50, dtype=torch.float32)
    beta = 0.1 + t * (20.0 - 0.1)
    want = beta * (1.0 - torch.exp(-2 * 0.1 * t - (20.0 - 0.1) * t**2))
    got = SubVPSDE(std_formula="original").g2(t)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)  # same maths; the exponent is rounded differently
    exact = beta.double() * -torch.expm1(-2 * 0.1 * t.double() - 19.9 * t.double() ** 2)
    assert float((SubVPSDE().g2(t).double() / exact - 1).abs().max()) < 1e-6


def test_scoreflow_std_and_mean_equal_score_flows_flax_output():
    """score_flow's high-precision branch against its own float32 output (flax fixture extract)."""
    ref = json.loads((FIXTURE_DIR / "score_flow_vp_marginal_prob.json").read_text())
    t = torch.tensor(ref["t"], dtype=torch.float32)
    sde = VPSDE(ref["beta_min"], ref["beta_max"], std_formula="scoreflow")
    assert torch.equal(sde.marginal_std(t), torch.tensor(ref["marginal_std"], dtype=torch.float32))
    x0 = torch.tensor(ref["x0"], dtype=torch.float32)
    mean, _ = sde.marginal(x0, t)
    assert torch.equal(mean, torch.tensor(ref["marginal_mean"], dtype=torch.float32))
    # t[1] lies in the branch: 1.6e-4 above the exact std, which "stable" gives
    exact = torch.tensor(ref["std_exact_float64"], dtype=torch.float64)
    assert abs(float(sde.marginal_std(t)[1]) / float(exact[1]) - 1 - 1.61e-4) < 1e-6
    torch.testing.assert_close(VPSDE().marginal_std(t).double(), exact, rtol=1e-6, atol=0)


def test_std_formula_is_read_from_the_config_and_checked():
    assert make_sde(VPSDEConfig(std_formula="original")).std_formula == "original"
    assert make_sde(SubVPSDEConfig(std_formula="scoreflow")).config()["std_formula"] == "scoreflow"
    assert make_sde(VPSDEConfig()).std_formula == "stable"
    with pytest.raises(ValueError, match="std_formula"):
        VPSDE(std_formula="float32")

"""The toys' closed-form truth and the toy job's diagnostics against it (issue 13, scope 2):

- the perturbed checkerboard (uniform squares convolved with a Gaussian, via Φ) — its score equals
  finite differences of its log-density in float64 at every t, it normalises, it tends to q_0;
- the exact score has zero score-FPE residual at every t (checkerboard and mixtures), zero score
  error and a ScoreODE whose own score is the data score (zero Fisher divergence);
- the mass on the checkerboard's squares: 1 for the exact density, 0.5 for uniform noise on
  [−4, 4]², and it falls as the data are blurred.
"""

import math

import pytest
import torch

from fpdiff import toys
from fpdiff.diagnostics import fisher_curve, mass_on_support, ode_nll, toy_density, toy_mechanism, toy_nll
from fpdiff.toys import Checkerboard, PerturbedScore, log_ndtr_diff

from _numerics_helpers import SDE_KINDS, gen, sde_of

TIMES = [1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0]


def _points(n: int, seed: int, spread: float = 5.0) -> torch.Tensor:
    """Points on, between and around the squares."""
    return (torch.rand(n, 2, generator=gen(seed), dtype=torch.float64) * 2 - 1) * spread


def test_log_ndtr_diff_is_exact_in_both_tails():
    from scipy.special import log_ndtr as sp_log_ndtr, ndtr

    b = torch.tensor([0.5, 3.0, -1.0, 40.0, -40.0, 9.0, -3.0], dtype=torch.float64)
    c = torch.tensor([-0.5, 1.0, -2.0, 38.0, -42.0, 8.0, -300.0], dtype=torch.float64)
    got = log_ndtr_diff(b, c)
    # where the plain difference is accurate, it is the reference
    plain = torch.log(torch.as_tensor(ndtr(b.numpy()) - ndtr(c.numpy())))
    assert torch.allclose(got[:3], plain[:3], rtol=1e-12)
    # far tails: Φ(b) − Φ(c) = Φ(b)(1 − Φ(c)/Φ(b)) with scipy's log Φ, and the reflection symmetry
    ref = torch.as_tensor(sp_log_ndtr(-c.numpy())) + torch.log1p(-torch.exp(torch.as_tensor(sp_log_ndtr(-b.numpy()) - sp_log_ndtr(-c.numpy()))))
    assert torch.allclose(got[3], ref[3], rtol=1e-9)
    ref_left = torch.as_tensor(sp_log_ndtr(b.numpy())) + torch.log1p(-torch.exp(torch.as_tensor(sp_log_ndtr(c.numpy()) - sp_log_ndtr(b.numpy()))))
    assert torch.allclose(got[4], ref_left[4], rtol=1e-9)
    assert torch.allclose(log_ndtr_diff(-c, -b), got, rtol=1e-12)
    assert torch.isfinite(got).all()
    # gradients stay finite where one branch of the stable form would overflow
    bb = b.clone().requires_grad_(True)
    log_ndtr_diff(bb, c).sum().backward()
    assert torch.isfinite(bb.grad).all()


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_checkerboard_score_equals_finite_differences_of_its_log_density(kind):
    sde = sde_of(kind)
    cb = Checkerboard()
    for i, tv in enumerate(TIMES):
        x = _points(300, i) * (1.0 if tv < 0.5 or kind != "ve" else 20.0)
        t = torch.full((x.shape[0],), tv, dtype=torch.float64)
        s = cb.score(x, t, sde)
        h = (1e-5 * sde.marginal_std(t))[:, None]
        cols = []
        for d, e in enumerate(torch.eye(2, dtype=torch.float64)):
            xp, xm = x + h * e, x - h * e
            step = xp[:, d] - xm[:, d]  # the step float64 realised (x ± h rounds)
            cols.append((cb.log_prob(xp, t, sde) - cb.log_prob(xm, t, sde)) / step)
        fd = torch.stack(cols, 1)
        # tolerance: relative to the score's natural size 1/std, plus the differences' float64
        # rounding (|log q| · 2⁻⁵² / h, large far off the squares at tiny std)
        scale = s.norm(dim=1) + 1.0 / sde.marginal_std(t)
        rounding = 4 * 2.0**-52 * cb.log_prob(x, t, sde).abs() / h[:, 0]
        assert torch.isfinite(s).all()
        assert bool(((s - fd).norm(dim=1) <= 1e-6 * scale + 10 * rounding).all()), (kind, tv)


def test_checkerboard_scaled_and_autograd_agree():
    sde = sde_of("vp")
    cb = Checkerboard(scale=0.5)
    x = _points(200, 3, spread=2.5).requires_grad_(True)
    t = torch.full((200,), 0.02, dtype=torch.float64)
    (g,) = torch.autograd.grad(cb.log_prob(x, t, sde).sum(), x)
    assert torch.allclose(cb.score(x.detach(), t, sde), g, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_perturbed_checkerboard_normalises_and_tends_to_the_data(kind):
    sde = sde_of(kind)
    cb = Checkerboard()
    # ∫ q_t = 1 on a fine grid wide enough for the blur (t small enough that the grid holds it)
    axes = toys.density_grid("checkerboard", 400, lo=[-6.0, -6.0], hi=[6.0, 6.0])
    pts = toys.grid_points(axes)
    vol = toys.cell_bounds(axes)[2]
    for tv in (1e-3, 0.05):
        q = cb.log_prob(pts, torch.full((pts.shape[0],), tv, dtype=torch.float64), sde).exp()
        assert float(q.sum() * vol) == pytest.approx(1.0, abs=2e-3), tv
    # t → 0: log q_t → log q_0 away from the edges
    x = toys.sample_toy("checkerboard", 2000, generator=gen(0), dtype=torch.float64)
    edge = ((x / 2 - torch.round(x / 2)).abs() * 2).min(1).values  # distance to the nearest edge
    inner = x[edge > 0.05]
    lq = cb.log_prob(inner, torch.full((inner.shape[0],), 1e-5, dtype=torch.float64), sde)
    assert torch.allclose(lq, cb.log_prob0(inner), atol=1e-8)
    assert torch.isfinite(cb.log_prob0(x)).all()  # samples lie on the squares


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_exact_checkerboard_score_has_zero_fpe_residual_at_every_t(kind):
    sde = sde_of(kind)
    cb = Checkerboard()
    x0 = toys.sample_toy("checkerboard", 64, generator=gen(0), dtype=torch.float64)
    res = toy_mechanism(cb.score_model(sde), cb, x0, TIMES, ode=False, generator=gen(1))
    for r, lhs in zip(res["residual"], res["dt_score"]):
        assert r <= 1e-9 * max(1.0, lhs), (kind, res)
    assert max(res["dt_score"]) > 1.0  # ∂t s itself is far from 0: the residual cancels
    assert res["fisher_model"] == [0.0] * len(TIMES)
    assert res["sigma_score"] == res["sigma_score_true"]
    # a wrong score is caught at every t
    wrong = toy_mechanism(PerturbedScore(cb.score_model(sde), 0.2), cb, x0, TIMES, ode=False, generator=gen(1))
    assert all(w > 1e-3 * max(1.0, lhs) for w, lhs in zip(wrong["residual"], wrong["dt_score"]))
    assert min(wrong["fisher_model"]) > 0


@pytest.mark.parametrize("dataset", ["mog1d", "mog2d"])
def test_exact_mixture_score_has_zero_fpe_residual_and_score_error(dataset):
    sde = sde_of("ve")
    law = toys.toy_law(dataset)
    x0 = toys.sample_toy(dataset, 64, generator=gen(0), dtype=torch.float64)
    res = toy_mechanism(law.score_model(sde), law, x0, TIMES, ode=False, generator=gen(1))
    assert all(r <= 1e-9 * max(1.0, lhs) for r, lhs in zip(res["residual"], res["dt_score"]))
    assert res["fisher_model"] == [0.0] * len(TIMES)


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_exact_checkerboard_scoreode_has_zero_fisher_divergence(kind):
    """The exact score's ODE marginals are q_t, so its ODE score is the data score (from the
    exact q_T at T)."""
    sde = sde_of(kind)
    cb = Checkerboard()
    truth = cb.score_model(sde)
    x0 = toys.sample_toy("checkerboard", 48, generator=gen(0), dtype=torch.float64)
    t_end = torch.ones(1, dtype=torch.float64)
    ts = [1e-2, 0.1, 0.5, 1.0]
    res = fisher_curve(truth, truth, x0, ts, rtol=1e-8, atol=1e-8, generator=gen(1),
                       prior_score=lambda z: truth.score(z, t_end.expand(z.shape[0])))
    wrong = fisher_curve(PerturbedScore(truth, 0.2), truth, x0, ts, rtol=1e-6, atol=1e-6, generator=gen(1),
                         prior_score=lambda z: truth.score(z, t_end.expand(z.shape[0])))
    for f, w in zip(res["fisher_ode"][:-1], wrong["fisher_ode"][:-1]):
        assert f < 1e-4 * w, (res, wrong)
    assert res["fisher_ode"][-1] == 0.0


def test_mass_on_support_exact_uniform_and_blurred():
    cb = Checkerboard()
    axes = toys.density_grid("checkerboard", 48)
    lo, hi, vol = toys.cell_bounds(axes)
    share = cb.support_fraction(lo, hi)
    # the default grid tiles the squares exactly: every cell wholly on or off (up to rounding)
    assert bool((torch.minimum(share, 1 - share).abs() < 1e-12).all())
    pts = toys.grid_points(axes)
    exact = mass_on_support(cb, axes, cb.log_prob0(pts))
    assert exact["mass_on_support"] == pytest.approx(1.0, abs=1e-12) and exact["mass_in_grid"] == pytest.approx(1.0, abs=1e-12)
    inside = (pts.abs() <= 4).all(1)
    uniform = torch.where(inside, torch.full((pts.shape[0],), -math.log(64.0), dtype=torch.float64),
                          torch.full((pts.shape[0],), -math.inf, dtype=torch.float64))
    assert mass_on_support(cb, axes, uniform)["mass_on_support"] == pytest.approx(0.5, abs=1e-12)
    # blurring the data moves mass off the squares, more with more blur
    sde = sde_of("ve")
    masses = []
    for tv in (0.2, 0.3, 0.4):  # std 0.055, 0.13, 0.30
        lq = cb.log_prob(pts, torch.full((pts.shape[0],), tv, dtype=torch.float64), sde)
        masses.append(mass_on_support(cb, axes, lq)["mass_on_support"])
    assert 1.0 > masses[0] > 0.95 and masses[0] > masses[1] > masses[2] > 0.5
    # non-aligned cells: fractional shares, exact areas
    half = cb.support_fraction(torch.tensor([[-1.0, 0.0]], dtype=torch.float64), torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    assert float(half) == pytest.approx(0.5)


def test_density_grid_layout():
    axes = toys.density_grid("checkerboard", 60)
    assert len(axes) == 2 and axes[0].numel() == 60
    w = float(axes[0][1] - axes[0][0])
    # the cell edges fall on −4 … 4 (multiples of 2 are edges)
    edges = torch.cat([axes[0] - w / 2, axes[0][-1:] + w / 2])
    for e in (-4.0, -2.0, 0.0, 2.0, 4.0):
        assert float((edges - e).abs().min()) < 1e-9
    pts = toys.grid_points(axes)
    assert torch.equal(pts[1], torch.stack([axes[0][1], axes[1][0]]))  # rows follow y
    one = toys.density_grid("mog1d", 50)
    assert len(one) == 1 and one[0].numel() == 50
    with pytest.raises(ValueError, match="not below"):
        toys.density_grid("checkerboard", 10, lo=[1.0, 1.0], hi=[0.0, 2.0])


def test_ode_measurements_of_the_exact_score_recover_the_truth():
    """The job's NLL / density / mass of the exact (mixture) score are the truth's."""
    sde = sde_of("ve")
    law = toys.toy_law("mog1d")
    model = law.score_model(sde)
    res = toy_nll(model, "mog1d", 64, seed=1, rtol=1e-6, atol=1e-6)
    x = toys.test_points("mog1d", 64, seed=1)
    assert torch.equal(x, toys.test_points("mog1d", 64, seed=1))  # the same points every time
    # the ODE gives log p_ε (ε = 1e-5: q_0 blurred by std 0.01), from the prior N(0, 50²) at T
    def q_eps(pts):
        return law.log_prob(pts.double(), torch.full((pts.shape[0],), 1e-5, dtype=torch.float64), sde)

    truth = -q_eps(x)
    err = (res["per_sample"] - truth).abs()  # a float32 solve: ~1e-3 per point
    assert float(err.mean()) < 5e-3 and float(err.max()) < 2e-2
    assert res["nll"] == pytest.approx(float(res["per_sample"].mean()))
    assert res["floor_method"] == "monte-carlo" and res["nll"] > res["floor"] - 0.3
    dens = toy_density(model, "mog1d", 40, rtol=1e-6, atol=1e-6)
    assert dens["mass_on_support"] is None and dens["mass_in_grid"] == pytest.approx(1.0, abs=0.02)
    pts = toys.grid_points(dens["axes"])
    assert float((dens["logp"] - q_eps(pts)).abs().max()) < 2e-2
    assert torch.allclose(dens["true_logp"], law.log_prob0(pts))
    per, nfe, solvers = ode_nll(model, x[:8].double(), rtol=1e-6, atol=1e-6, batch_size=3)
    assert float((per - truth[:8]).abs().max()) < 2e-2 and nfe > 0 and solvers == ["dopri5"]


def test_checkerboard_exact_score_density_holds_its_mass():
    """The exact checkerboard score's ODE density at ε: the data blurred by std(ε), nearly all of
    its mass on the squares (the job's mass measure on a model that is right)."""
    sde = sde_of("ve")
    cb = Checkerboard()
    dens = toy_density(cb.score_model(sde), "checkerboard", 16, eps=1e-2, rtol=1e-5, atol=1e-5)
    assert dens["mass_on_support"] > 0.95 and dens["mass_in_grid"] == pytest.approx(1.0, abs=0.02)

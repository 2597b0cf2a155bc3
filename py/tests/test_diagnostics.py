"""Diagnostics: the score-FPE residual curve and the ScoreODE's Fisher divergence along t."""

import pytest
import torch

from fpdiff.diagnostics import fisher_curve, fpe_residual_curve, ode_score
from fpdiff.toys import PerturbedScore, toy_mixture

from _numerics_helpers import SDE_KINDS, gen, mixture, sde_of


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_fpe_residual_curve_separates_exact_from_wrong_scores(kind):
    sde = sde_of(kind)
    g = mixture(2, seed=4)
    x0 = g.sample(64, gen(0))
    ts = [0.01, 0.1, 0.5, 0.9]
    exact = fpe_residual_curve(g.score_model(sde), x0, ts, generator=gen(1))
    wrong = fpe_residual_curve(PerturbedScore(g.score_model(sde), 0.2), x0, ts, generator=gen(1))
    assert exact["t"] == ts
    assert max(exact["relative"]) < 1e-6
    assert min(wrong["relative"]) > 0.05
    hut = fpe_residual_curve(g.score_model(sde), x0, ts, div="hutchinson", n_probes=2, generator=gen(1))
    assert all(h > 0 for h in hut["relative"])  # estimator noise only
    assert all(lhs > 0 for lhs in exact["lhs"])


def test_ode_score_of_the_exact_score_is_the_data_score():
    """For the exact score the ODE marginals are q_t, so ∇log p_t^ODE = ∇log q_t (Lu et al. 2022)."""
    sde = sde_of("vp")
    g = toy_mixture("mog1d")
    x0 = g.sample(32, gen(0))
    t = 0.3
    tt = torch.full((32,), t, dtype=torch.float64)
    xt = sde.perturb(x0, tt, torch.randn(x0.shape, generator=gen(1), dtype=torch.float64))
    m = g.score_model(sde)
    s_ode = ode_score(m, xt, t, rtol=1e-7, atol=1e-7,
                      prior_score=lambda z: g.score(z, torch.ones(z.shape[0], dtype=torch.float64), sde))
    s_q = g.score(xt, tt, sde)
    assert float((s_ode - s_q).norm() / s_q.norm()) < 1e-4


def test_ode_score_of_a_wrong_score_differs_from_it_in_2d():
    """For a model that is not a gradient field the ODE's score differs from the model's own score."""
    sde = sde_of("ve")
    g = mixture(2, seed=2)
    x0 = g.sample(32, gen(0))
    res_exact = fisher_curve(g.score_model(sde), g.score_model(sde), x0, [0.4, 0.8], generator=gen(1))
    res_wrong = fisher_curve(PerturbedScore(g.score_model(sde), 0.2), g.score_model(sde), x0, [0.4, 0.8],
                             generator=gen(1))
    assert max(res_exact["fisher_model"]) == 0.0
    assert max(res_exact["fisher_ode"]) < 0.02 * min(res_wrong["fisher_ode"])
    assert min(res_wrong["fisher_model"]) > 0 and min(res_wrong["ode_vs_model"]) > 0


def test_ode_score_uses_the_transposed_jacobian():
    """Linear, non-symmetric s(x) = A x: the ODE is linear, x_T = Φ x_t with
    Φ = e^{c(T)−c(t)} expm(−½ A ∫_t^T g²), so ∇log p_t^ODE(x) = −ΦᵀΦ x / σ_T² exactly."""
    from fpdiff.score import FunctionScore

    sde = sde_of("vp")
    a = torch.tensor([[-1.0, 0.8], [-0.3, -2.0]], dtype=torch.float64)
    model = FunctionScore(lambda x, t: x @ a.T, sde)
    t = 0.5
    tt = torch.tensor([t, 1.0], dtype=torch.float64)
    c = sde.log_mean_coef(tt)
    big_g = float(-2 * (c[1] - c[0]))  # ∫_t^1 β = u(1) − u(t)
    phi = torch.exp(c[1] - c[0]) * torch.matrix_exp(-0.5 * big_g * a)
    x = torch.randn(8, 2, generator=gen(0), dtype=torch.float64)
    ref = -x @ (phi.T @ phi).T
    got = ode_score(model, x, t, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)

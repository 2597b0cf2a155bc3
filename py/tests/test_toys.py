"""Closed-form perturbed mixtures against autograd of log q_t; toy data sets (docs/maths.md §7)."""

import math

import pytest
import torch

from fpdiff import toys
from fpdiff.toys import GaussianMixture, sample_toy, toy_mixture

from _numerics_helpers import SDE_KINDS, gen, mixture, sde_of


def _autograd_truth(g, x, t, sde):
    xx = x.clone().requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    lp = g.log_prob(xx, tt, sde)
    s = torch.autograd.grad(lp.sum(), xx, create_graph=True)[0]
    d = x.shape[1]
    jac = torch.stack([torch.autograd.grad(s[:, i].sum(), xx, create_graph=True)[0] for i in range(d)], 1)
    div = jac.diagonal(dim1=1, dim2=2).sum(-1)
    gdiv = torch.autograd.grad(div.sum(), xx, retain_graph=True)[0]
    dts = torch.stack([torch.autograd.grad(s[:, i].sum(), tt, retain_graph=True)[0] for i in range(d)], 1)
    return s.detach(), jac.detach(), div.detach(), gdiv, dts


@pytest.mark.parametrize("kind", SDE_KINDS)
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_closed_forms_equal_autograd_of_log_q(kind, dim):
    sde = sde_of(kind)
    g = mixture(dim, seed=dim)
    x = 1.5 * torch.randn(7, dim, generator=gen(1), dtype=torch.float64)
    t = 0.02 + 0.9 * torch.rand(7, generator=gen(2), dtype=torch.float64)
    s, jac, div, gdiv, dts = _autograd_truth(g, x, t, sde)
    tol = dict(rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(g.score(x, t, sde), s, **tol)
    torch.testing.assert_close(g.jacobian(x, t, sde), jac, **tol)
    torch.testing.assert_close(g.divergence(x, t, sde), div, **tol)
    torch.testing.assert_close(g.grad_div(x, t, sde), gdiv, **tol)
    torch.testing.assert_close(g.dt_score(x, t, sde), dts, **tol)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_closed_form_score_fpe_holds(kind):
    """∂t s equals the closed-form right-hand side of the score FPE (docs/maths.md §5.1)."""
    sde = sde_of(kind)
    g = mixture(2, seed=5)
    x = 2 * torch.randn(50, 2, generator=gen(3), dtype=torch.float64)
    t = 1e-3 + torch.rand(50, generator=gen(4), dtype=torch.float64)
    lhs, rhs = g.dt_score(x, t, sde), g.fpe_rhs(x, t, sde)
    assert float((lhs - rhs).norm() / rhs.norm()) < 1e-10


def test_log_prob_normalises_and_matches_q0():
    sde = sde_of("vp")
    g = mixture(1, seed=3)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)[:, None]
    for tv in (1e-5, 0.2, 1.0):
        p = g.log_prob(grid, torch.tensor(tv, dtype=torch.float64), sde).exp()
        assert abs(float(torch.trapezoid(p, grid[:, 0])) - 1) < 1e-8
    lp0 = g.log_prob0(grid)
    lpe = g.log_prob(grid, torch.tensor(0.0, dtype=torch.float64), sde)
    torch.testing.assert_close(lp0, lpe)


def test_mixture_sampling_and_moments():
    g = mixture(2, seed=7)
    x = g.sample(40000, gen(0))
    mean, cov = g.moments()
    torch.testing.assert_close(x.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.06, rtol=0)
    sde = sde_of("ve")
    m_t, c_t = g.moments(sde, 0.5)
    sig2 = float(sde.marginal_var(torch.tensor(0.5, dtype=torch.float64)))
    torch.testing.assert_close(c_t, cov + sig2 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(m_t, mean)


def test_checkerboard_matches_facts():
    x = sample_toy("checkerboard", 40000, generator=gen(0), dtype=torch.float64)
    assert x.shape == (40000, 2)
    assert float(x.abs().max()) <= 4.0
    # uniform on 8 squares of side 2: cell (i, j) of the 4×4 grid is occupied iff i + j is even
    cells = torch.floor(x / 2).long() + 2  # 0..3
    occupied = torch.zeros(4, 4)
    for i in range(4):
        for j in range(4):
            occupied[i, j] = ((cells[:, 0] == i) & (cells[:, 1] == j)).double().mean()
    black = torch.tensor([[(i + j) % 2 == 0 for j in range(4)] for i in range(4)])
    assert float(occupied[~black].sum()) == 0.0
    torch.testing.assert_close(occupied[black], torch.full((8,), 1 / 8), atol=0.01, rtol=0)
    assert toys.toy_entropy("checkerboard") == pytest.approx(math.log(32))
    assert math.log(32) == pytest.approx(3.4657, abs=1e-4)


def test_mog1d_matches_facts():
    g = toy_mixture("mog1d")
    torch.testing.assert_close(g.means[:, 0], torch.tensor([-2.0, -6.0, 4.0], dtype=torch.float64) / 7)
    torch.testing.assert_close(g.variances[:, 0], torch.tensor([0.1, 0.1, 1.0], dtype=torch.float64) / 49)
    torch.testing.assert_close(g.weights, torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64))
    x = sample_toy("mog1d", 50000, generator=gen(1), dtype=torch.float64)
    mean, cov = g.moments()
    assert abs(float(x.mean()) - float(mean)) < 0.01
    assert abs(float(x.var()) / float(cov) - 1) < 0.03


@pytest.mark.parametrize("name", toys.DATASETS)
def test_toy_generators_are_seeded(name):
    a = sample_toy(name, 500, generator=gen(9))
    b = sample_toy(name, 500, generator=gen(9))
    c = sample_toy(name, 500, generator=gen(10))
    assert a.shape[0] == 500 and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()
    s = sample_toy(name, 500, generator=gen(9), scale=2.0)
    torch.testing.assert_close(s, 2 * a, rtol=1e-5, atol=1e-5)


def test_isotropic_mog_in_higher_dimension():
    g = toy_mixture("mog1d", dim=3)
    assert g.means.shape == (3, 3)
    x = sample_toy("mog1d", 2000, dim=3, generator=gen(0), dtype=torch.float64)
    # every coordinate of a sample comes from the same component: within-sample spread is small
    assert float((x - x.mean(1, keepdim=True)).abs().max()) < 1.0
    assert GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.ones(1)).variances.shape == (1, 2)

"""The derivative module against closed forms and plain autograd."""

import pytest
import torch

from fpdiff import derivatives
from fpdiff.derivatives import FiniteDifference, ScoreDerivatives, parse_dt, sample_probes, stencil_weights
from fpdiff.score import NetworkScore

import _derivative_helpers as dv
from _numerics_helpers import SDE_KINDS, TinyConv, TinyMLP, gen, mixture, sde_of


def _net_model(kind="vp", dim=3, seed=0):
    return NetworkScore(TinyMLP(dim, seed=seed).double(), sde_of(kind), param="noise")


def _loop_jacobian(model, x, t):
    xx = x.clone().requires_grad_(True)
    s = model.score(xx, t)
    return torch.stack([torch.autograd.grad(s[:, i].sum(), xx, retain_graph=True)[0] for i in range(x.shape[1])], 1)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_closed_form_derivatives_through_the_module(kind):
    sde = sde_of(kind)
    g = mixture(2, seed=1)
    m = g.score_model(sde)
    x = torch.randn(9, 2, generator=gen(0), dtype=torch.float64)
    t = 0.01 + torch.rand(9, generator=gen(1), dtype=torch.float64)
    c = ScoreDerivatives(m, x, t, dt="autodiff", x_grad=True)
    torch.testing.assert_close(c.s, g.score(x, t, sde))
    torch.testing.assert_close(c.jacobian(), g.jacobian(x, t, sde))
    torch.testing.assert_close(c.divergence_exact(), g.divergence(x, t, sde))
    torch.testing.assert_close(c.grad_div(), g.grad_div(x, t, sde))
    torch.testing.assert_close(c.dt_s, g.dt_score(x, t, sde))


def test_jvp_by_forward_mode_equals_jacobian_product():
    m = _net_model()
    x = torch.randn(6, 3, generator=gen(0), dtype=torch.float64)
    t = torch.rand(6, generator=gen(1), dtype=torch.float64)
    v = torch.randn(6, 3, generator=gen(2), dtype=torch.float64)
    s, jv = dv.jvp(m, x, t, v)
    jac = _loop_jacobian(m, x, t)
    torch.testing.assert_close(jv, torch.einsum("bij,bj->bi", jac, v))
    torch.testing.assert_close(s, m.score(x, t))
    torch.testing.assert_close(dv.jacobian(m, x, t), jac)


def test_several_probes_and_dt_in_one_replicated_pass():
    m = _net_model("subvp")
    x = torch.randn(5, 3, generator=gen(0), dtype=torch.float64)
    t = 0.1 + torch.rand(5, generator=gen(1), dtype=torch.float64)
    v = sample_probes(x, 3, "gaussian", gen(2))
    c = ScoreDerivatives(m, x, t, x_tangent=v, dt="autodiff")
    jac = _loop_jacobian(m, x, t)
    torch.testing.assert_close(c.jv, torch.einsum("bij,kbj->kbi", jac, v))
    _, dts = dv.dt_score(m, x, t)
    torch.testing.assert_close(c.dt_s, dts)
    # ∂t s by autograd in t for reference
    tt = t.clone().requires_grad_(True)
    s = m.score(x, tt)
    ref = torch.stack([torch.autograd.grad(s[:, i].sum(), tt, retain_graph=True)[0] for i in range(3)], 1)
    torch.testing.assert_close(dts, ref)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_finite_difference_dt_agrees_with_autodiff(kind):
    m = mixture(2, seed=2).score_model(sde_of(kind))
    x = torch.randn(64, 2, generator=gen(0), dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(64, generator=gen(1), dtype=torch.float64)
    _, exact = dv.dt_score(m, x, t)
    _, fd = dv.dt_score(m, x, t, FiniteDifference(1e-3, 5e-4), t_min=1e-5)
    rel = (fd - exact).norm(dim=1) / exact.norm(dim=1).clamp_min(1e-12)
    assert float(rel.max()) < 1e-3


def test_finite_difference_stays_in_the_domain_for_small_t():
    """The original stencil evaluates s at t − 1e-3 and yields NaN for VP when t < 1e-3."""
    sde = sde_of("vp")
    m = mixture(2, seed=3).score_model(sde)
    x = torch.randn(32, 2, generator=gen(0), dtype=torch.float64)
    t = torch.linspace(1e-5, 9e-4, 32, dtype=torch.float64)
    assert torch.isnan(sde.marginal_std(t - 1e-3)).any()  # the reference's failure mode
    _, fd = dv.dt_score(m, x, t, FiniteDifference(), t_min=1e-5)
    _, exact = dv.dt_score(m, x, t)
    assert torch.isfinite(fd).all()
    rel = (fd - exact).norm(dim=1) / exact.norm(dim=1)
    assert float(rel.max()) < 2e-2
    # the weights reproduce the original stencil in the interior
    a, b = torch.tensor([5e-4], dtype=torch.float64), torch.tensor([-1e-3], dtype=torch.float64)
    w0, wa, wb = stencil_weights(a, b)
    hs, hd = 1e-3, 5e-4
    low = hs * hd * (hd + hs)
    torch.testing.assert_close(torch.cat([w0, wa, wb]), torch.tensor([(hd**2 - hs**2) / low, hs**2 / low, -hd**2 / low], dtype=torch.float64))


def test_parse_dt_forms():
    from fpdiff import config as C

    assert parse_dt("autodiff") == "autodiff"
    steps = C.FiniteDifferenceSteps(hs=2e-3, hd=1e-3)
    assert parse_dt(C.FiniteDifference(finite_difference=steps)) == FiniteDifference(2e-3, 1e-3)
    assert parse_dt(C.FiniteDifference()) == FiniteDifference()  # the DSL's default steps
    assert parse_dt(FiniteDifference(1e-2, 1e-2)) == FiniteDifference(1e-2, 1e-2)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_divergence_averages_to_exact(probe):
    m = _net_model("ve", dim=4)
    x = torch.randn(3, 4, generator=gen(0), dtype=torch.float64)
    t = torch.rand(3, generator=gen(1), dtype=torch.float64)
    exact = dv.divergence_exact(m, x, t)
    k = 4000
    v = sample_probes(x, k, probe, gen(5))
    est_fwd = ScoreDerivatives(m, x, t, x_tangent=v).divergence_hutchinson()
    est_rev = ScoreDerivatives(m, x, t, x_grad=True).divergence_hutchinson(v)
    torch.testing.assert_close(est_fwd, est_rev)
    jac = _loop_jacobian(m, x, t)
    # standard error of the mean of vᵀJv: Var = 2‖J_sym‖²_F (− 2Σ J_ii² for Rademacher)
    js = 0.5 * (jac + jac.transpose(1, 2))
    var = 2 * js.pow(2).sum((1, 2))
    if probe == "rademacher":
        var = var - 2 * jac.diagonal(dim1=1, dim2=2).pow(2).sum(-1)
    se = (var / k).sqrt()
    assert bool(((est_fwd - exact).abs() < 5 * se + 1e-12).all())


def test_grad_of_probe_contracted_jvp_is_unbiased_for_grad_div():
    m = _net_model("vp", dim=3, seed=4)
    x = torch.randn(2, 3, generator=gen(0), dtype=torch.float64)
    t = 0.3 + torch.zeros(2, dtype=torch.float64)
    exact = dv.grad_div(m, x, t)
    k = 3000
    v = sample_probes(x, k, "rademacher", gen(1))
    c = ScoreDerivatives(m, x, t, x_tangent=v, create_graph=False)
    # ∇x Σ_k ⟨v_k, J v_k⟩ / k: one reverse pass over the k-probe forward pass
    est = c.grad_x(c.vjv()) / k
    torch.testing.assert_close(est, exact, atol=0.1 * float(exact.abs().max()), rtol=0)
    one = ScoreDerivatives(m, x, t, x_tangent=v[:1]).grad_vjv()
    xx = x.clone().requires_grad_(True)
    s = m.score(xx, t)
    jac = torch.stack([torch.autograd.grad(s[:, i].sum(), xx, create_graph=True)[0] for i in range(3)], 1)
    q = torch.einsum("bi,bij,bj->b", v[0], jac, v[0])
    torch.testing.assert_close(one, torch.autograd.grad(q.sum(), xx)[0])


def test_image_shaped_inputs():
    """[B, C, H, W]: J·v, Hutchinson and the exact divergence (small image) agree with autograd."""
    net = TinyConv(channels=2).double()
    m = NetworkScore(net, sde_of("ve"), param="score")
    x = torch.randn(3, 2, 3, 3, generator=gen(0), dtype=torch.float64)
    t = torch.rand(3, generator=gen(1), dtype=torch.float64)
    v = sample_probes(x, 1, "rademacher", gen(2))
    c = ScoreDerivatives(m, x, t, x_tangent=v, dt="autodiff")
    xx = x.clone().requires_grad_(True)
    s = m.score(xx, t)
    d = x[0].numel()
    jac = torch.stack([torch.autograd.grad(s.reshape(3, -1)[:, i].sum(), xx, retain_graph=True)[0].reshape(3, -1)
                       for i in range(d)], 1)
    torch.testing.assert_close(c.jv[0].reshape(3, -1), torch.einsum("bij,bj->bi", jac, v[0].reshape(3, -1)))
    exact = jac.diagonal(dim1=1, dim2=2).sum(-1)
    torch.testing.assert_close(ScoreDerivatives(m, x, t, x_grad=True).divergence_exact(), exact)
    assert c.dt_s.shape == x.shape and c.grad_vjv().shape == x.shape


def test_derivatives_backpropagate_into_parameters():
    net = TinyMLP(2).double()
    m = NetworkScore(net, sde_of("vp"), param="noise")
    x = torch.randn(4, 2, generator=gen(0), dtype=torch.float64)
    t = 0.2 + torch.rand(4, generator=gen(1), dtype=torch.float64)
    v = sample_probes(x, 1, "rademacher", gen(2))
    c = ScoreDerivatives(m, x, t, x_tangent=v, dt="autodiff", x_grad=True)
    loss = c.jv.pow(2).sum() + c.dt_s.pow(2).sum() + c.grad_div().pow(2).sum() + c.grad_vjv().pow(2).sum()
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    got = [g for g in grads if g is not None]
    assert len(got) >= len(grads) - 1 and all(torch.isfinite(g).all() for g in got)
    assert sum(float(g.abs().sum()) for g in got) > 0

    # the gradient of ‖J·v‖² matches the one computed with a reverse-over-reverse Jacobian
    net.zero_grad()
    jv = dv.jvp(m, x, t, v[0])[1]
    g1 = torch.autograd.grad(jv.pow(2).sum(), list(net.parameters()), allow_unused=True)
    jac = dv.jacobian(m, x, t)
    g2 = torch.autograd.grad(torch.einsum("bij,bj->bi", jac, v[0]).pow(2).sum(), list(net.parameters()),
                             allow_unused=True)
    for p, a, b in zip(net.parameters(), g1, g2):
        zero = torch.zeros_like(p)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b)


def test_exact_jacobian_refused_for_large_d():
    m = _net_model("ve", dim=3)
    x = torch.randn(1, 3, dtype=torch.float64)
    old = derivatives.MAX_EXACT_DIM
    derivatives.MAX_EXACT_DIM = 2
    try:
        with pytest.raises(ValueError):
            dv.jacobian(m, x, torch.ones(1, dtype=torch.float64))
    finally:
        derivatives.MAX_EXACT_DIM = old

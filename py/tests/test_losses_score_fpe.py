"""The score-FPE regulariser (docs/maths.md §5) against closed-form mixture scores, all SDEs and modes."""

import pytest
import torch

from fpdiff.derivatives import FiniteDifference, sample_probes
from fpdiff import config as C
from fpdiff.losses import DSMLoss, ScoreFPELoss, build_loss
from fpdiff.losses.score_fpe import fpe_residual
from fpdiff.score import NetworkScore
from fpdiff.toys import PerturbedScore

from _numerics_helpers import SDE_KINDS, TinyConv, TinyMLP, gen, mixture, sde_of


@pytest.mark.parametrize("kind", SDE_KINDS)
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_residual_of_exact_mixture_score_vanishes(kind, dim):
    sde = sde_of(kind)
    g = mixture(dim, seed=10 + dim)
    x0 = g.sample(128, gen(0))
    t = 1e-3 + 0.999 * torch.rand(128, generator=gen(1), dtype=torch.float64)
    xt = sde.perturb(x0, t, torch.randn(x0.shape, generator=gen(2), dtype=torch.float64))
    exact = g.score_model(sde)
    parts = fpe_residual(exact, xt, t, div="exact", dt="autodiff")
    rel = float(parts["residual"].norm() / parts["rhs"].norm())
    assert rel < 1e-3, rel
    torch.testing.assert_close(parts["rhs"], g.fpe_rhs(xt, t, sde))
    # a perturbed score violates the equation by a large margin
    wrong = fpe_residual(PerturbedScore(exact, 0.1), xt, t, div="exact", dt="autodiff")
    assert float(wrong["residual"].norm() / wrong["rhs"].norm()) > 0.1


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_finite_difference_and_hutchinson_estimators(kind):
    sde = sde_of(kind)
    g = mixture(2, seed=3)
    x0 = g.sample(64, gen(0))
    t = 0.01 + 0.98 * torch.rand(64, generator=gen(1), dtype=torch.float64)
    xt = sde.perturb(x0, t, torch.randn(x0.shape, generator=gen(2), dtype=torch.float64))
    m = g.score_model(sde)
    fd = fpe_residual(m, xt, t, div="exact", dt=FiniteDifference(), t_min=1e-5)
    assert float(fd["residual"].norm() / fd["rhs"].norm()) < 1e-3
    # Hutchinson: E_v of the residual is the exact residual (the RHS is linear in the estimate)
    v = sample_probes(xt, 3000, "rademacher", gen(3))
    hut = fpe_residual(m, xt, t, div="hutchinson", dt="autodiff", probes=v)
    assert float(hut["residual"].norm() / hut["rhs"].norm()) < 0.05


def _manual_terms(sde, model, x, t, m, weighting):
    xx = x.clone().requires_grad_(True)
    s = model.score(xx, t)
    d = x.shape[1]
    jac = torch.stack([torch.autograd.grad(s[:, i].sum(), xx, create_graph=True)[0] for i in range(d)], 1)
    div = jac.diagonal(dim1=1, dim2=2).sum(-1)
    g2 = sde.g2(t)
    phi = 0.5 * g2 * (div + s.pow(2).sum(1)) - sde.log_mean_coef_dt(t) * (xx * s).sum(1)
    rhs = torch.autograd.grad(phi.sum(), xx, create_graph=True)[0]
    tt = t.clone().requires_grad_(True)
    s_t = model.score(x, tt)
    dts = torch.stack([torch.autograd.grad(s_t[:, i].sum(), tt, create_graph=True)[0] for i in range(d)], 1)
    r = dts - rhs
    w = {"ll": g2, "convention": g2.sqrt(), "constant": torch.ones_like(g2)}[weighting]
    vec = (w * r.norm(dim=1) ** m).mean() / d**m
    sca = phi.norm()
    return vec, sca


@pytest.mark.parametrize("kind", SDE_KINDS)
@pytest.mark.parametrize("weighting,m", [("ll", 2), ("convention", 1), ("constant", 3)])
def test_vector_and_scalar_terms_match_the_definition(kind, weighting, m):
    sde = sde_of(kind)
    model = NetworkScore(TinyMLP(2, seed=1).double(), sde, param="noise" if kind != "ve" else "score")
    x0 = torch.randn(16, 2, generator=gen(0), dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(16, generator=gen(1), dtype=torch.float64)
    z = torch.randn(16, 2, generator=gen(2), dtype=torch.float64)
    term = ScoreFPELoss(C.ScoreFPETerm(mode="both", alpha=0.3, beta=0.02, m=m, weighting=weighting, points="pert",
                                      div="exact"))
    res = build_loss([DSMLoss(C.DSMTerm(weighting="likelihood", reduce="mean")), term])(model, x0, t=t, z=z)
    xt = sde.perturb(x0, t, z)
    vec, sca = _manual_terms(sde, model, xt, t, m, weighting)
    torch.testing.assert_close(res.terms["score_fpe.vector"], vec)
    torch.testing.assert_close(res.terms["score_fpe.scalar"], sca)
    torch.testing.assert_close(res.weighted["score_fpe"], 0.3 * vec + 0.02 * sca)
    for mode, keys in (("scalar", {"score_fpe.scalar"}), ("vector", {"score_fpe.vector"})):
        r = build_loss([ScoreFPELoss(C.ScoreFPETerm(mode=mode, m=m, weighting=weighting, div="exact"))])(model, x0, t=t, z=z)
        assert set(r.terms) == keys


def test_points_choices():
    sde = sde_of("vp")
    model = NetworkScore(TinyMLP(2).double(), sde, param="noise")
    x0 = 3 + torch.randn(32, 2, generator=gen(0), dtype=torch.float64)
    for points in ("pert", "x", "random"):
        expr = build_loss([DSMLoss(C.DSMTerm(reduce="mean")), ScoreFPELoss(C.ScoreFPETerm(points=points, div="exact"))])
        batch = expr.draw(model, x0, generator=gen(1))
        pts = batch.at(points).x
        if points == "x":
            torch.testing.assert_close(pts.detach(), x0)
        elif points == "pert":
            torch.testing.assert_close(pts.detach(), batch.xt)
        else:
            assert float(pts.min()) >= float(x0.min()) and float(pts.max()) <= float(x0.max())
            assert not torch.allclose(pts.detach(), x0)
        assert torch.isfinite(expr.evaluate(batch).total)


def test_vp_small_t_is_finite_with_finite_differences():
    """The reference's stencil returns NaN for VP when t < 1e-3; here every draw is finite."""
    sde = sde_of("vp")
    model = NetworkScore(TinyMLP(2).double(), sde, param="noise")
    x0 = torch.randn(64, 2, generator=gen(0), dtype=torch.float64)
    t = torch.linspace(1e-5, 2e-3, 64, dtype=torch.float64)
    term = ScoreFPELoss(C.ScoreFPETerm(dt=C.FiniteDifference(finite_difference=C.FiniteDifferenceSteps(hs=1e-3, hd=5e-4)),
                                      div="exact"))
    res = build_loss([DSMLoss(C.DSMTerm(reduce="mean")), term])(model, x0, t=t)
    assert torch.isfinite(res.total)
    res.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_image_path_hutchinson_on_bchw():
    sde = sde_of("subvp")
    model = NetworkScore(TinyConv(channels=2).double(), sde, param="noise")
    x0 = torch.rand(4, 2, 4, 4, generator=gen(0), dtype=torch.float64)
    expr = build_loss([DSMLoss(C.DSMTerm(weighting="likelihood", reduce="mean")),
                       ScoreFPELoss(C.ScoreFPETerm(mode="both", div="hutchinson", dt="autodiff", probe="gaussian"))])
    res = expr(model, x0, generator=gen(1))
    assert set(res.terms) == {"dsm", "score_fpe.vector", "score_fpe.scalar"}
    res.total.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the image residual of the exact score of a (flattened) Gaussian mixture vanishes too
    g = mixture(8, seed=1)
    exact = g.score_model(sde)
    x = g.sample(16, gen(2)).reshape(16, 2, 2, 2)
    t = 0.1 + 0.8 * torch.rand(16, generator=gen(3), dtype=torch.float64)
    v = sample_probes(x, 1, "rademacher", gen(4))
    hut = fpe_residual(exact, x, t, div="hutchinson", probes=v)
    ex = fpe_residual(exact, x, t, div="exact")
    assert hut["residual"].shape == x.shape
    assert float(ex["residual"].norm() / ex["rhs"].norm()) < 1e-6


def test_fpe_with_autodiff_shares_one_forward_pass_with_dsm():
    sde = sde_of("ve")
    net = TinyMLP(2).double()
    model = NetworkScore(net, sde, param="score")
    x0 = torch.randn(8, 2, generator=gen(0), dtype=torch.float64)
    calls = {"n": 0}
    orig = net.forward

    def counting(x, labels):
        calls["n"] += 1
        return orig(x, labels)

    net.forward = counting
    try:
        build_loss([DSMLoss(C.DSMTerm(reduce="mean")), ScoreFPELoss(C.ScoreFPETerm(div="exact"))])(model, x0, generator=gen(1))
        assert calls["n"] == 1  # s, ∂t s (dual in t), J and ∇x φ all come from the same pass
        calls["n"] = 0
        build_loss([DSMLoss(C.DSMTerm(reduce="mean")), ScoreFPELoss(C.ScoreFPETerm(div="hutchinson", dt=FiniteDifference()))])(model, x0, generator=gen(1))
        assert calls["n"] == 2  # plus one batched forward for the two stencil nodes
    finally:
        net.forward = orig

"""First-order DSM (docs/maths.md §4) and the loss expression's shared draw."""

import pytest
import torch

from fpdiff import config as C
from fpdiff.losses import DSMLoss, HighOrderLoss, LossExpression, ScoreFPELoss, build_loss, build_term
from fpdiff.score import NetworkScore
from fpdiff.sde import bcast

from _numerics_helpers import SDE_KINDS, TinyMLP, gen, mixture, sde_of


def _setup(kind="vp", dim=2, b=64):
    sde = sde_of(kind)
    model = NetworkScore(TinyMLP(dim).double(), sde, param="noise")
    x0 = torch.randn(b, dim, generator=gen(0), dtype=torch.float64)
    t = 1e-3 + torch.rand(b, generator=gen(1), dtype=torch.float64)
    z = torch.randn(b, dim, generator=gen(2), dtype=torch.float64)
    return sde, model, x0, t, z


@pytest.mark.parametrize("kind", SDE_KINDS)
@pytest.mark.parametrize("weighting", ["conventional", "likelihood"])
@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_dsm_matches_the_formula(kind, weighting, reduce):
    sde, model, x0, t, z = _setup(kind)
    res = build_loss([C.DSMTerm(weighting=weighting, reduce=reduce)])(model, x0, t=t, z=z)
    mean, std = sde.marginal(x0, t)
    xt = mean + bcast(std, x0) * z
    s = model.score(xt, t)
    r = (lambda q: q.mean(1)) if reduce == "mean" else (lambda q: 0.5 * q.sum(1))
    if weighting == "conventional":
        ref = r((s * std[:, None] + z) ** 2).mean()
    else:
        ref = (r((s + z / std[:, None]) ** 2) * sde.g2(t)).mean()
    torch.testing.assert_close(res.total, ref)
    torch.testing.assert_close(res.terms["dsm"], ref)


def test_importance_sampling_draws_t_from_the_proposal_and_drops_the_weight():
    sde, model, x0, _, _ = _setup("vp", b=4000)
    expr = build_loss([DSMLoss(C.DSMTerm(weighting="likelihood", importance_sampling=True))])
    batch = expr.draw(model, x0, generator=gen(4))
    # the proposal g²/std² puts most mass at small t for VP
    assert float((batch.t < 0.1).double().mean()) > 0.4  # vs 0.1 for uniform t
    s = batch.at().s
    ref = ((s * batch.std[:, None] + batch.z) ** 2).mean(1).mean()
    torch.testing.assert_close(expr.evaluate(batch).total, ref)
    with pytest.raises(ValueError):
        DSMLoss(C.DSMTerm(weighting="conventional", importance_sampling=True))


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_true_score_minimises_dsm(kind):
    """DSM is minimised by the true score: a perturbed score scores worse (many draws)."""
    sde = sde_of(kind)
    g = mixture(2, seed=4)
    from fpdiff.toys import PerturbedScore

    exact = g.score_model(sde)
    wrong = PerturbedScore(exact, 0.2)
    x0 = g.sample(20000, gen(0))
    expr = build_loss([C.DSMTerm(weighting="likelihood", reduce="mean")])
    a = expr(exact, x0, generator=gen(1)).total
    b = expr(wrong, x0, generator=gen(1)).total
    assert float(b) > float(a)


def test_terms_share_one_draw_and_t_defaults():
    sde, model, x0, _, _ = _setup("ve", b=32)
    expr = LossExpression([HighOrderLoss(C.HighOrderTerm(order=2, estimator="exact"))])
    batch = expr.draw(model, x0, generator=gen(0))
    assert float(batch.t.min()) >= 1e-5 and float(batch.t.max()) <= 1.0
    expr2 = build_loss(C.LossConfig(terms=(C.DSMTerm(eps=0.5, reduce="mean"), C.ScoreFPETerm(mode="scalar", div="exact"))))
    batch2 = expr2.draw(model, x0, generator=gen(0))
    assert float(batch2.t.min()) >= 0.5
    # all terms read the same x_t: the FPE term at 'pert' is evaluated where the DSM term is
    assert batch2.at("pert").x is batch2.xt or torch.equal(batch2.at("pert").x, batch2.xt)
    res = expr2.evaluate(batch2)
    assert set(res.terms) == {"dsm", "score_fpe.scalar"}
    assert set(res.weighted) == {"dsm", "score_fpe"}
    torch.testing.assert_close(res.total, res.weighted["dsm"] + res.weighted["score_fpe"])
    assert set(res.log()) == {"loss", "dsm", "score_fpe.scalar"}


def test_build_term_takes_the_generated_term_configs():
    t = build_term(C.HighOrderTerm(order=3, parts=("frobenius",), lambdas=C.HighOrderLambdas(second=0.5, third=0.1),
                                   estimator="exact"))
    assert isinstance(t, HighOrderLoss) and t.second == 0.5 and t.third == 0.1 and t.order == 3
    f = build_term(C.ScoreFPETerm(mode="vector", alpha=1.0, beta=0.0, m=1, weighting="convention", points="x",
                                  dt=C.FiniteDifference(finite_difference=C.FiniteDifferenceSteps(hs=1e-3, hd=5e-4))))
    assert isinstance(f, ScoreFPELoss) and f.points == "x" and f.m == 1.0 and f.dt.hs == 1e-3
    assert f.div == "hutchinson"  # the DSL's default (a hand-written copy once said "exact")
    d = build_term(C.DSMTerm(importance_sampling=True, weighting="likelihood"))
    assert d.importance_sampling and d.reduce == "sum"  # the DSL's default (once "mean" here)
    assert build_term(d) is d
    with pytest.raises(KeyError):
        build_term({"kind": "dsm"})  # configs are read once, by the generated types: no dicts
    with pytest.raises(ValueError):
        build_loss([C.DSMTerm(), C.DSMTerm(eps=0.5)])


def test_build_loss_from_the_config_dataclasses():
    from fpdiff import config as C

    cfg = C.LossConfig(terms=(
        C.DSMTerm(weighting="likelihood", reduce="mean"),
        C.HighOrderTerm(order=3, parts=("frobenius", "trace"), lambdas=C.HighOrderLambdas(second=0.5, third=0.1),
                        estimator="hutchinson"),
        C.ScoreFPETerm(mode="vector", dt=C.FiniteDifference(finite_difference=C.FiniteDifferenceSteps(hs=2e-3, hd=1e-3)),
                       div="exact", probe="rademacher"),
    ))
    expr = build_loss(cfg)
    dsm, ho, fpe = expr.terms
    assert dsm.weighting == "likelihood" and ho.second == 0.5 and ho.third == 0.1
    assert fpe.dt.hs == 2e-3 and fpe.dt.hd == 1e-3 and fpe.probe == "rademacher"
    sde, model, x0, _, _ = _setup("subvp", b=8)
    res = expr(model, x0, generator=gen(3))
    assert set(res.terms) == {"dsm", "high_order.frobenius", "high_order.trace", "high_order.third",
                              "score_fpe.vector"}
    res.total.backward()

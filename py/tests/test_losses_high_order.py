"""Error-bounded high-order DSM (docs/maths.md §6): formulas, Hutchinson vs exact, consistency."""

import pytest
import torch


from fpdiff import config as C
from fpdiff.losses import DSMLoss, HighOrderLoss, build_loss
from fpdiff.score import NetworkScore, ScoreModel

from _numerics_helpers import TinyMLP, gen, sde_of


def _model(kind="ve", dim=2, seed=0):
    return NetworkScore(TinyMLP(dim, seed=seed).double(), sde_of(kind), param="eps", label="t")


def _draw(dim=2, b=8, seed=0):
    x0 = torch.randn(b, dim, generator=gen(seed), dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(b, generator=gen(seed + 1), dtype=torch.float64)
    z = torch.randn(b, dim, generator=gen(seed + 2), dtype=torch.float64)
    return x0, t, z


def _toy_reference(model, x0, t, z):
    """docs/maths.md §6.2 toy formulas written in ε̂ = σ·s, J_ε = ∂ε̂/∂x, by plain autograd."""
    sde = model.sde
    sig = sde.marginal_std(t)[:, None]
    xt = (sde.mean_coef(t)[:, None] * x0 + sig * z).requires_grad_(True)
    eps_hat = model.score(xt, t) * sig
    d = x0.shape[1]
    jac = torch.stack([torch.autograd.grad(eps_hat[:, i].sum(), xt, create_graph=True)[0] for i in range(d)], 1)
    div = jac.diagonal(dim1=1, dim2=2).sum(-1)
    gdiv = torch.autograd.grad(div.sum(), xt, create_graph=True)[0]
    c = z + eps_hat.detach()
    eye = torch.eye(d, dtype=x0.dtype)
    l2 = (sig[:, :, None] * jac + eye - c[:, :, None] * c[:, None, :]).pow(2).mean((1, 2)).mean()
    l2tr = ((sig[:, 0] * div + d - c.pow(2).sum(1)).pow(2) / d).mean()
    r3 = (sig**2 * gdiv + c.pow(2).sum(1, keepdim=True) * c - (sig * div.detach()[:, None] + d) * c
          - 2 * torch.einsum("bij,bj->bi", sig[:, :, None] * jac.detach() + eye, c))
    l3 = r3.pow(2).mean(1).mean()
    return l2, l2tr, l3


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_exact_form_equals_toy_formulas(kind):
    model = _model(kind)
    x0, t, z = _draw()
    l2, l2tr, l3 = _toy_reference(model, x0, t, z)
    term = HighOrderLoss(C.HighOrderTerm(order=3, parts=("frobenius", "trace"),
                                         lambdas=C.HighOrderLambdas(second=0.5, third=0.1),
                                         estimator="exact"))
    res = build_loss([term])(model, x0, t=t, z=z)
    torch.testing.assert_close(res.terms["high_order.frobenius"], l2)
    torch.testing.assert_close(res.terms["high_order.trace"], l2tr)
    torch.testing.assert_close(res.terms["high_order.third"], l3)
    torch.testing.assert_close(res.total, 0.5 * (l2 + l2tr) + 0.1 * l3)
    # gradients agree with the reference's, stop-gradients included
    params = list(model.parameters())
    ga = torch.autograd.grad(res.total, params, allow_unused=True)
    gb = torch.autograd.grad(0.5 * (l2 + l2tr) + 0.1 * l3, params, allow_unused=True)
    for p, a, b in zip(params, ga, gb):
        zero = torch.zeros_like(p)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b)


def test_hutchinson_form_equals_image_formulas():
    """docs/maths.md §6.3 image version, with the probe drawn by the expression."""
    model = _model("vp", dim=3)
    x0, t, z = _draw(dim=3)
    expr = build_loss([HighOrderLoss(C.HighOrderTerm(order=3, estimator="hutchinson", probe="rademacher"))])
    batch = expr.draw(model, x0, t=t, z=z, generator=gen(7))
    res = expr.evaluate(batch)
    v = batch.probes["pert"][1][0]
    sig = batch.std[:, None]
    xt = batch.xt.clone().requires_grad_(True)
    s = model.score(xt, t)
    d = 3
    jac = torch.stack([torch.autograd.grad(s[:, i].sum(), xt, create_graph=True)[0] for i in range(d)], 1)
    jv = torch.einsum("bij,bj->bi", jac, v)
    vjv = (v * jv).sum(1, keepdim=True)
    gvjv = torch.autograd.grad(vjv.sum(), xt, create_graph=True)[0]
    c = z + sig * s.detach()
    cv = (c * v).sum(1, keepdim=True)
    vv = (v * v).sum(1, keepdim=True)
    frob = ((sig**2 * jv + v - cv * c) ** 2 / d).mean(1).mean()
    tr = (((sig**2 * vjv + vv - cv**2) / d) ** 2).mean()
    r3 = sig**3 * gvjv + cv**2 * c - (sig**2 * vjv.detach() + vv) * c - 2 * cv * (sig**2 * jv.detach() + v)
    third = ((r3**2) / d**2).mean(1).mean()
    torch.testing.assert_close(res.terms["high_order.frobenius"], frob)
    torch.testing.assert_close(res.terms["high_order.trace"], tr)
    torch.testing.assert_close(res.terms["high_order.third"], third)
    params = list(model.parameters())
    ga = torch.autograd.grad(res.total, params, allow_unused=True)
    gb = torch.autograd.grad(frob + tr + third, params, allow_unused=True)
    for p, a, b in zip(params, ga, gb):
        zero = torch.zeros_like(p)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b)


def test_hutchinson_averages_to_exact_form():
    """Frobenius: E_v equals the exact form; trace and third-order residuals are unbiased before
    squaring (the normalisations differ by D and D², see the module docstring)."""
    model = _model("ve", dim=3, seed=2)
    x0, t, z = _draw(dim=3, b=4, seed=3)
    exact = build_loss([HighOrderLoss(C.HighOrderTerm(order=3, estimator="exact"))])(model, x0, t=t, z=z)
    k = 4000
    hut = build_loss([HighOrderLoss(C.HighOrderTerm(order=3, estimator="hutchinson"), n_probes=k)])
    batch = hut.draw(model, x0, t=t, z=z, generator=gen(11), create_graph=False)
    res = hut.evaluate(batch)
    assert abs(float(res.terms["high_order.frobenius"]) / float(exact.terms["high_order.frobenius"]) - 1) < 0.03

    # residual level: E_v[vᵀAv] = tr A and E_v[R₃(v)] = R₃
    der = batch.at("pert")
    v = batch.probes["pert"][1]
    d = 3
    sig = batch.std
    c = z + sig[:, None] * der.s.detach()
    jac = der.jacobian()
    a_mat = sig[:, None, None] ** 2 * jac + torch.eye(d, dtype=torch.float64) - c[:, :, None] * c[:, None, :]
    tr_exact = a_mat.diagonal(dim1=1, dim2=2).sum(-1)
    vav = torch.einsum("kbi,bij,kbj->kb", v, a_mat, v)
    torch.testing.assert_close(vav.mean(0), tr_exact, atol=0.05 * float(tr_exact.abs().max()) + 0.05, rtol=0)
    # Rademacher identity: E[(vᵀAv)²] = (tr A)² + 2‖A_sym‖²_F − 2 Σ A_ii²
    a_sym = 0.5 * (a_mat + a_mat.transpose(1, 2))
    second_moment = tr_exact**2 + 2 * a_sym.pow(2).sum((1, 2)) - 2 * a_mat.diagonal(dim1=1, dim2=2).pow(2).sum(-1)
    torch.testing.assert_close(vav.pow(2).mean(0), second_moment, rtol=0.08, atol=0.05)
    # trace term of the Hutchinson form = mean over samples of E_v[(vᵀAv)²]/D²
    torch.testing.assert_close(res.terms["high_order.trace"], (second_moment / d**2).mean(), rtol=0.08, atol=0)
    # third order: E_v[R₃(v)] = R₃ of the exact form (before the different normalisations)
    gdiv = der.grad_div()
    r3_exact = (sig[:, None] ** 3 * gdiv + c.pow(2).sum(1, keepdim=True) * c
                - (sig[:, None] ** 2 * jac.diagonal(dim1=1, dim2=2).sum(-1)[:, None] + d) * c
                - 2 * (torch.einsum("bij,bj->bi", sig[:, None, None] ** 2 * jac, c) + c))
    jv = der.jv
    cv = torch.einsum("bi,kbi->kb", c, v)[..., None]
    vjv = (v * jv).sum(-1, keepdim=True)
    gvjv = der.grad_x_probes(vjv[..., 0])
    r3_v = (sig[None, :, None] ** 3 * gvjv + cv**2 * c - (sig[None, :, None] ** 2 * vjv + (v * v).sum(-1, keepdim=True)) * c
            - 2 * cv * (sig[None, :, None] ** 2 * jv + v))
    scale = float(r3_exact.abs().max())
    torch.testing.assert_close(r3_v.mean(0), r3_exact, atol=0.08 * scale, rtol=0)


class _TruthWithLearnableHigherOrders(ScoreModel):
    """s(x) = s_true(x) + (H − J_true)δ + (κᵀδ)δ/(D+1) with δ = x − sg(x) = 0: the value is the true
    score, the Jacobian is H and ∇x(∇·s) is κ, so ℓ₂ trains H and ℓ₃ trains κ in isolation."""

    def __init__(self, sde, cov, h, kappa):
        self.sde, self.cov, self.h, self.kappa = sde, cov, h, kappa

    def _prec(self, t):
        a = self.sde.mean_coef(t)[0]
        var = self.sde.marginal_var(t)[0]
        return torch.linalg.inv(a**2 * self.cov + var * torch.eye(self.cov.shape[0], dtype=self.cov.dtype))

    def score(self, x, t):
        prec = self._prec(t)
        delta = x - x.detach()
        d = x.shape[1]
        lin = delta @ (self.h - (-prec)).T
        quad = (delta @ self.kappa)[:, None] * delta / (d + 1)
        return -x @ prec.T + lin + quad


@pytest.mark.parametrize("estimator", ["exact", "hutchinson"])
def test_minimising_high_order_objectives_recovers_true_scores(estimator):
    """Gaussian data: the minimiser of ℓ₂ over H is the true J = −(a²Σ + σ²I)⁻¹ and that of ℓ₃ over
    κ the true ∇(∇·s) = 0 (the estimators are consistent). One fixed large sample, solved by L-BFGS."""
    sde = sde_of("ve")
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)
    n, tv = 20000, 0.55  # σ(0.55) ≈ 1.08: the σ² J term is not swamped by the noise of ccᵀ
    x0 = torch.randn(n, 2, generator=gen(0), dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    z = torch.randn(n, 2, generator=gen(1), dtype=torch.float64)
    t = torch.full((n,), tv, dtype=torch.float64)
    h = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    kappa = torch.tensor([0.5, -0.5], dtype=torch.float64, requires_grad=True)
    model = _TruthWithLearnableHigherOrders(sde, cov, h, kappa)
    parts = ("frobenius",) if estimator == "exact" else ("frobenius", "trace")
    expr = build_loss([HighOrderLoss(C.HighOrderTerm(order=3, parts=parts, estimator=estimator))])
    opt = torch.optim.LBFGS([h, kappa], lr=1.0, max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = expr(model, x0, t=t, z=z, generator=gen(2)).total  # same probes every evaluation
        loss.backward()
        return loss

    opt.step(closure)
    true_j = -model._prec(t[:1])
    err_h = float((h.detach() - true_j).abs().max())
    assert err_h < 0.03, (h.detach(), true_j)
    assert float(kappa.detach().abs().max()) < 0.03, kappa.detach()


def test_dsm_plus_high_order_shares_the_forward_pass():
    model = _model("ve")
    x0, t, z = _draw()
    calls = {"n": 0}
    net = model.network
    orig = net.forward

    def counting(x, labels):
        calls["n"] += 1
        return orig(x, labels)

    net.forward = counting
    try:
        build_loss([DSMLoss(C.DSMTerm(reduce="mean")), HighOrderLoss(C.HighOrderTerm(order=3, estimator="hutchinson"))])(model, x0, t=t, z=z, generator=gen(0))
    finally:
        net.forward = orig
    assert calls["n"] == 1  # one dual forward pass serves ℓ₁, J·v and ∇x⟨v, Jv⟩



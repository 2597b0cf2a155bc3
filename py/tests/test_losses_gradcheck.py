"""Every loss backpropagates correct, finite gradients: gradcheck in float64 on a tiny MLP.

The high-order terms contain stop-gradients (c = z + σ·sg(s), sg(J), sg(∇·s)), which a
finite-difference check cannot reproduce (it perturbs the stopped values too); for them the
analytic gradient is compared with an independent autograd implementation of the original
formulas in test_losses_high_order.py, and here checked to be finite and non-zero."""

import pytest
import torch

from fpdiff.losses import build_loss

from _numerics_helpers import FunctionalMLP, functional_weights, gen, sde_of, wire_loss

CASES = [
    ("vp", [{"kind": "dsm", "reduce": "mean"}]),
    ("ve", [{"kind": "dsm", "weighting": "likelihood", "reduce": "sum"}]),
    ("vp", [{"kind": "dsm", "weighting": "likelihood", "importanceSampling": True, "reduce": "mean"}]),
    ("vp", [{"kind": "dsm", "weighting": "likelihood", "reduce": "mean"},
            {"kind": "scoreFpe", "mode": "both", "div": "exact", "dt": "autodiff"}]),
    ("subvp", [{"kind": "scoreFpe", "mode": "vector", "div": "hutchinson", "m": 1, "weighting": "convention",
                "dt": {"finiteDifference": {"hs": 1e-3, "hd": 5e-4}}}]),
    ("ve", [{"kind": "scoreFpe", "mode": "scalar", "points": "random", "div": "exact"}]),
]


@pytest.mark.parametrize("kind,terms", CASES, ids=[f"{k}-{'+'.join(t['kind'] for t in ts)}-{i}"
                                                   for i, (k, ts) in enumerate(CASES)])
def test_gradcheck(kind, terms):
    sde = sde_of(kind)
    weights = functional_weights(2, hidden=3)
    x0 = torch.randn(3, 2, generator=gen(0), dtype=torch.float64)
    expr = build_loss(wire_loss(*terms))

    def f(*w):
        model = FunctionalMLP(sde, *w)
        return expr(model, x0, generator=gen(1)).total  # same draw every call

    val = f(*weights)
    assert torch.isfinite(val)
    assert torch.autograd.gradcheck(f, tuple(weights), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("estimator", ["exact", "hutchinson"])
@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
def test_high_order_gradients_are_finite(kind, estimator):
    sde = sde_of(kind)
    weights = functional_weights(2, hidden=3)
    x0 = torch.randn(3, 2, generator=gen(0), dtype=torch.float64)
    expr = build_loss(wire_loss({"kind": "dsm", "reduce": "mean"},
                                {"kind": "highOrder", "order": 3, "estimator": estimator, "parts": ["frobenius", "trace"]}))
    total = expr(FunctionalMLP(sde, *weights), x0, generator=gen(1)).total
    grads = torch.autograd.grad(total, weights)
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0

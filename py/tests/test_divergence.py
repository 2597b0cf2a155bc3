"""Evaluation divergences (fpdiff.divergence) against the exact Jacobian trace by plain autograd."""

import pytest
import torch

from fpdiff import derivatives
from fpdiff.derivatives import sample_inner, sample_probes
from fpdiff.divergence import divergence_eval, divergence_forward, divergence_reverse
from fpdiff.score import NetworkScore

from _numerics_helpers import TinyConv, TinyMLP, gen, sde_of


def _jacobian(model, x, t):
    """J [B, D, D] by one reverse pass per output dimension (the slow, obvious way)."""
    xx = x.clone().requires_grad_(True)
    s = model.score(xx, t).reshape(x.shape[0], -1)
    rows = [torch.autograd.grad(s[:, i].sum(), xx, retain_graph=True)[0].reshape(x.shape[0], -1)
            for i in range(s.shape[1])]
    return torch.stack(rows, 1), s.reshape(x.shape)


@pytest.mark.parametrize("shape", [(3, 4), (3, 2, 3, 3)])
def test_exact_and_probe_divergences_by_both_modes(shape):
    net = TinyMLP(shape[1], seed=2).double() if len(shape) == 2 else TinyConv(channels=2).double()
    m = NetworkScore(net, sde_of("vp" if len(shape) == 2 else "ve"), param="noise" if len(shape) == 2 else "score")
    x = torch.randn(*shape, generator=gen(0), dtype=torch.float64)
    t = 0.05 + torch.rand(shape[0], generator=gen(1), dtype=torch.float64)
    jac, s_ref = _jacobian(m, x, t)
    exact = jac.diagonal(dim1=1, dim2=2).sum(-1)
    v = sample_probes(x, 3, "rademacher", gen(2))
    vf = v.reshape(3, shape[0], -1)
    probe_mean = sample_inner(vf, torch.einsum("bij,kbj->kbi", jac, vf), lead=2).mean(0)
    for fn in (divergence_forward, divergence_reverse):
        s, div = fn(m, x, t)
        torch.testing.assert_close(s, s_ref)
        torch.testing.assert_close(div, exact)
        torch.testing.assert_close(fn(m, x, t, v)[1], probe_mean)
        assert not div.requires_grad
    for mode in ("auto", "forward", "reverse"):
        torch.testing.assert_close(divergence_eval(m, x, t, mode=mode)[1], exact)
        torch.testing.assert_close(divergence_eval(m, x, t, v, mode=mode)[1], probe_mean)
    with pytest.raises(ValueError, match="mode"):
        divergence_eval(m, x, t, mode="sideways")


def test_exact_divergence_refused_for_large_d():
    m = NetworkScore(TinyMLP(3).double(), sde_of("ve"), param="score")
    x = torch.randn(1, 3, dtype=torch.float64)
    old = derivatives.MAX_EXACT_DIM
    derivatives.MAX_EXACT_DIM = 2
    try:
        for fn in (divergence_forward, divergence_reverse):
            with pytest.raises(ValueError, match="D = 3"):
                fn(m, x, torch.ones(1, dtype=torch.float64))
    finally:
        derivatives.MAX_EXACT_DIM = old

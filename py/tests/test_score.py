"""ScoreModel parameterisations (docs/maths.md §3)."""

import torch

from fpdiff.config import DDPMppConfig, DSMTerm, MLPConfig, NCSNppConfig, ToyDataConfig
import torch.nn as nn

from fpdiff.losses import build_loss
from fpdiff.score import NetworkScore, score_model

from _numerics_helpers import gen, sde_of, wire_loss


class Recorder(nn.Module):
    """Returns a fixed function of x and remembers the labels it was given."""

    def forward(self, x, labels):
        self.labels = labels
        return 2.0 * x + 1.0


def test_original_parameterisations():
    x = torch.randn(4, 3, generator=gen(0), dtype=torch.float64)
    t = torch.rand(4, generator=gen(1), dtype=torch.float64)
    out = 2 * x + 1
    ve, vp = sde_of("ve"), sde_of("vp")

    net = Recorder()
    s = score_model(net, ve, NCSNppConfig()).score(x, t)
    torch.testing.assert_close(s, out)
    torch.testing.assert_close(net.labels, ve.marginal_std(t))

    for kind in ("vp", "subvp"):
        sde = sde_of(kind)
        s = score_model(net, sde, DDPMppConfig()).score(x, t)
        torch.testing.assert_close(s, -out / sde.marginal_std(t)[:, None])
        torch.testing.assert_close(net.labels, 999 * t)

    # toy MLP: label t, ε̂ ≈ −z and score = +ε̂/σ
    s = score_model(net, vp, MLPConfig(param="eps")).score(x, t)
    torch.testing.assert_close(s, out / vp.marginal_std(t)[:, None])
    torch.testing.assert_close(net.labels, t)
    s = score_model(net, vp, MLPConfig(param="score")).score(x, t)
    torch.testing.assert_close(s, out)
    # scalar t broadcasts
    s0 = NetworkScore(net, ve).score(x, torch.tensor(0.5, dtype=torch.float64))
    assert s0.shape == x.shape and net.labels.shape == (4,)


def test_eps_parameterisation_sign_matches_the_toy_dsm_target():
    """With ε̂ = −z exactly, the toy's ℓ₁ = mean(ε̂ + z)² is zero and score·σ = −z."""
    sde = sde_of("ve")

    class Oracle(nn.Module):
        z = None

        def forward(self, x, labels):
            return -self.z

    net = Oracle()
    x0 = torch.randn(5, 2, generator=gen(0), dtype=torch.float64)
    z = torch.randn(5, 2, generator=gen(1), dtype=torch.float64)
    net.z = z
    res = build_loss([DSMTerm(reduce="mean")])(score_model(net, sde, MLPConfig()), x0, z=z, generator=gen(2))
    assert float(res.total) < 1e-20


def test_with_the_project_toy_network():
    from fpdiff.models import ToyScoreMLP

    net = ToyScoreMLP(dim=2)
    model = score_model(net, sde_of("ve"), MLPConfig(param="eps"))
    x = torch.randn(7, 2, generator=gen(0))
    t = torch.rand(7, generator=gen(1))
    s = model.score(x, t)
    assert s.shape == x.shape and torch.isfinite(s).all()
    res = build_loss(wire_loss({"kind": "dsm", "reduce": "mean"},
                               {"kind": "highOrder", "order": 3, "estimator": "exact", "parts": ["frobenius"],
                                "lambdas": {"second": 0.5, "third": 0.1}}))(model, x, generator=gen(2))
    res.total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())

"""ODE likelihood (docs/maths.md §8) against analytic log-densities."""

import math

import pytest
import torch

from fpdiff.likelihood import bits_per_dim, bpd_offset, ode_likelihood
from fpdiff.score import NetworkScore
from fpdiff.toys import GaussianMixture, toy_mixture

from _numerics_helpers import SDE_KINDS, TinyConv, gen, sde_of

T1 = torch.tensor(1.0, dtype=torch.float64)
TEPS = torch.tensor(1e-5, dtype=torch.float64)


def _gaussian():
    return GaussianMixture(torch.ones(1), torch.tensor([[0.5, -1.0]], dtype=torch.float64),
                           torch.tensor([[0.3, 2.0]], dtype=torch.float64))


@pytest.mark.parametrize("kind", SDE_KINDS)
@pytest.mark.parametrize("law", ["gaussian", "mog1d"])
def test_exact_score_reproduces_analytic_log_density(kind, law):
    """With the exact score and the exact q_T at T, log p_ε(x) = log q_ε(x) within 1e-3 nats."""
    sde = sde_of(kind)
    g = _gaussian() if law == "gaussian" else toy_mixture("mog1d")
    x = g.sample(48, gen(0))
    res = ode_likelihood(g.score_model(sde), x, divergence="exact", rtol=1e-6, atol=1e-6,
                         prior_logp=lambda z: g.log_prob(z, T1, sde))
    ref = g.log_prob(x, TEPS, sde)
    assert float((res.logp - ref).abs().max()) < 1e-3
    assert res.nfe > 10
    torch.testing.assert_close(res.logp, res.prior_logp + res.delta_logp)


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_with_the_sde_prior_and_default_tolerances(kind):
    """With the SDE's own prior the only extra error is KL(q_T‖prior): small for these laws."""
    sde = sde_of(kind)
    g = toy_mixture("mog1d")
    x = g.sample(64, gen(1))
    res = ode_likelihood(g.score_model(sde), x)  # dopri5, rtol = atol = 1e-5, exact divergence (D=1)
    ref = g.log_prob(x, TEPS, sde)
    assert float((res.logp - ref).abs().mean()) < 1e-2


def test_hutchinson_divergence_is_unbiased():
    sde = sde_of("vp")
    g = _gaussian()
    x = g.sample(4, gen(2)).repeat(400, 1)  # the same 4 points, 400 independent probes each
    res = ode_likelihood(g.score_model(sde), x, divergence="hutchinson", probe="rademacher", generator=gen(3),
                         prior_logp=lambda z: g.log_prob(z, T1, sde))
    est = res.logp.reshape(400, 4).mean(0)
    ref = g.log_prob(x[:4], TEPS, sde)
    se = res.logp.reshape(400, 4).std(0) / math.sqrt(400)
    assert bool(((est - ref).abs() < 5 * se + 1e-3).all())


def test_bits_per_dim_offset_and_dequantisation():
    """bpd = −log p/(D ln 2) + offset; offset 8 for [0, 1] data and 7 for [−1, 1] data."""
    assert bpd_offset(False) == 8.0 and bpd_offset(True) == 7.0
    sde = sde_of("vp")
    # a 'model' whose score is that of N(0.5, 0.04 I) on 1×2×2 images
    d = 4
    g = GaussianMixture(torch.ones(1), torch.full((1, d), 0.5, dtype=torch.float64),
                        torch.full((1, d), 0.04, dtype=torch.float64))
    model = g.score_model(sde)
    x = torch.rand(8, 1, 2, 2, generator=gen(0), dtype=torch.float64)
    prior = lambda z: g.log_prob(z.reshape(z.shape[0], -1), T1, sde)  # noqa: E731
    res = bits_per_dim(model, x, centered=False, dequantize=False, divergence="exact", prior_logp=prior,
                       rtol=1e-6, atol=1e-6)
    ref = -g.log_prob(x.reshape(8, -1), TEPS, sde) / (d * math.log(2)) + 8
    torch.testing.assert_close(res.per_sample[0], ref, atol=1e-3, rtol=0)
    deq = bits_per_dim(model, x, centered=False, dequantize=True, repeats=3, generator=gen(1),
                       divergence="exact", prior_logp=prior)
    assert deq.per_sample.shape == (3, 8) and len(deq.nfe) == 3
    # repeats draw different dequantisation noise
    assert not torch.allclose(deq.per_sample[0], deq.per_sample[1])


def test_image_batches_run_with_hutchinson_and_callback_can_cancel():
    sde = sde_of("ve")
    model = NetworkScore(TinyConv(channels=1).double(), sde, param="score")
    x = torch.rand(2, 1, 4, 4, generator=gen(0), dtype=torch.float64)
    res = bits_per_dim(model, x, centered=True, divergence="hutchinson", generator=gen(1), rtol=1e-3, atol=1e-3)
    assert math.isfinite(res.bpd) and res.per_sample.shape == (1, 2)

    class Stop(Exception):
        pass

    def cb(nfe, total):
        if nfe >= 3:
            raise Stop

    with pytest.raises(Stop):
        ode_likelihood(model, x, divergence="hutchinson", generator=gen(1), callback=cb)


def test_solve_ode_falls_back_to_fixed_step_rk4_when_the_adaptive_step_underflows():
    from fpdiff.likelihood import solve_ode

    # a pole just off the grid of the fallback: dopri5's step collapses there, RK4 steps over it
    f = lambda t, y: torch.ones_like(y) / (t - 0.50005) ** 2  # noqa: E731
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    sol, solver = solve_ode(f, torch.zeros(3, dtype=torch.float64), ts, rtol=1e-5, atol=1e-5, method="dopri5")
    assert solver.startswith("rk4") and "dopri5 underflowed" in solver
    assert torch.isfinite(sol[-1]).all()
    # a well-behaved problem keeps the adaptive solver
    sol, solver = solve_ode(lambda t, y: -y, torch.ones(2, dtype=torch.float64), ts, rtol=1e-8, atol=1e-8, method="dopri5")
    assert solver == "dopri5"
    torch.testing.assert_close(sol[-1], torch.full((2,), math.exp(-1.0), dtype=torch.float64))


def _scipy_batch_solve(model, x, probes, tol):
    """The original's solve: scipy RK45 on the flattened float64 batch state (one step for the
    batch, RMS norm over every component), a float32 network. Returns (log p, nfe)."""
    import numpy as np
    from scipy.integrate import solve_ivp

    from fpdiff.divergence import divergence_eval
    from fpdiff.sde import bcast

    sde, shape, b = model.sde, x.shape, x.shape[0]

    def f(t, y):
        xs = torch.from_numpy(y[:-b]).reshape(shape)
        vt = torch.full((b,), t, dtype=torch.float64)
        s, div = divergence_eval(model, xs.float(), vt.float(), probes, mode="reverse")
        g2 = sde.g2(vt)
        dx = sde.drift(xs, vt) - 0.5 * bcast(g2, xs) * s.double()
        dd = sde.div_drift(xs, vt) - 0.5 * g2 * div.double()
        return np.concatenate([dx.reshape(-1).numpy(), dd.numpy()])

    sol = solve_ivp(f, (1e-5, 1.0), np.concatenate([x.double().reshape(-1).numpy(), np.zeros(b)]), rtol=tol, atol=tol,
                    method="RK45")
    y = torch.from_numpy(sol.y[:, -1])
    return sde.prior_logp(y[:-b].reshape(shape)) + y[-b:], sol.nfev


@pytest.mark.parametrize("kind", ["vp", "subvp", "ve"])
def test_image_likelihood_matches_a_tight_float64_solve_in_any_batch(kind):
    """A float32 conv net on 4 × 4 images: the default solve (float64 state, per-sample steps) is
    within 5e-3 bits/dim of a float64 solve at rtol = atol = 1e-7, no less accurate than the
    original's solve (scipy's RK45 on the flattened batch) at the same tolerance, and gives an image
    the same answer alone as in the batch; solved in t, as the original, each image takes no more
    evaluations on average than the original's batch solve."""
    sde = sde_of(kind)
    param = "eps" if kind == "ve" else "noise"  # VE: score = ε̂/σ, so the flow stays bounded
    model32 = NetworkScore(TinyConv(channels=2, hidden=8, seed=1), sde, param=param)
    model64 = NetworkScore(TinyConv(channels=2, hidden=8, seed=1).double(), sde, param=param)
    x = 2 * torch.rand(3, 2, 4, 4, generator=gen(0)) - 1
    v = 2 * torch.randint(0, 2, (1, 3, 2, 4, 4), generator=gen(1)).float() - 1
    d = x[0].numel()
    ref = ode_likelihood(model64, x.double(), divergence="hutchinson", probes=v.double(), rtol=1e-7, atol=1e-7,
                         norm="mixed", time="t")
    res = ode_likelihood(model32, x, divergence="hutchinson", probes=v)
    assert res.logp.dtype == torch.float32 and res.solver == "dopri5"
    err_bpd = (res.logp.double() - ref.logp.double()).abs() / (d * math.log(2))
    assert float(err_bpd.max()) < 5e-3
    orig_logp, orig_nfe = _scipy_batch_solve(model32, x, v, 1e-5)
    orig_err = (orig_logp - ref.logp.double()).abs() / (d * math.log(2))
    assert float(err_bpd.max()) <= max(float(orig_err.max()), 1e-5)
    alone = ode_likelihood(model32, x[1:2], divergence="hutchinson", probes=v[:, 1:2])
    assert abs(float(alone.logp[0]) - float(res.logp[1])) <= 1e-5 * abs(float(res.logp[1]))
    assert int(alone.nfe_per_sample[0]) == int(res.nfe_per_sample[1])
    in_t = ode_likelihood(model32, x, divergence="hutchinson", probes=v, time="t")
    assert float(in_t.nfe_per_sample.float().mean()) <= orig_nfe, (in_t.nfe_per_sample, orig_nfe)

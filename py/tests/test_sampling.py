"""Samplers with the exact mixture score reproduce the mixture's moments (docs/maths.md §9)."""

import math

import pytest
import torch

from fpdiff.sampling import euler_maruyama_step, langevin_step, ode_sample, pc_sample, reverse_diffusion_step
from fpdiff.toys import GaussianMixture

from _numerics_helpers import SDE_KINDS, gen, sde_of

MIX = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[1.0, -1.0], [-0.5, 2.0]], dtype=torch.float64),
                      torch.tensor([[0.2, 0.5], [1.0, 0.3]], dtype=torch.float64))


def _check_moments(x, n_sigma=5.0, cov_tol=0.12):
    mean, cov = MIX.moments()
    se = (torch.diagonal(cov) / x.shape[0]).sqrt()
    assert bool(((x.mean(0) - mean).abs() < n_sigma * se).all()), (x.mean(0), mean)
    emp = torch.cov(x.T)
    assert float((emp - cov).abs().max()) < cov_tol, (emp, cov)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_pc_reverse_diffusion_langevin(kind):
    m = MIX.score_model(sde_of(kind))
    res = pc_sample(m, (3000, 2), N=300, generator=gen(0), dtype=torch.float64)
    assert res.nfe == 600
    _check_moments(res.x)


@pytest.mark.parametrize("kind", ["ve", "subvp"])
def test_euler_maruyama_without_corrector(kind):
    m = MIX.score_model(sde_of(kind))
    res = pc_sample(m, (3000, 2), predictor="euler_maruyama", corrector="none", N=300, generator=gen(1),
                    dtype=torch.float64)
    assert res.nfe == 300
    _check_moments(res.x)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_probability_flow_ode_sampler(kind):
    m = MIX.score_model(sde_of(kind))
    res = ode_sample(m, (3000, 2), generator=gen(2), dtype=torch.float64, rtol=1e-5, atol=1e-5)
    _check_moments(res.x)
    # the ODE is deterministic: the same latent gives the same sample
    z = m.sde.prior_sample((5, 2), generator=gen(3), dtype=torch.float64)
    a = ode_sample(m, None, z=z).x
    b = ode_sample(m, None, z=z).x
    torch.testing.assert_close(a, b)


def test_ode_sampler_inverts_the_likelihood_flow():
    """Mapping a latent to data and back with the same ODE recovers the latent."""
    from torchdiffeq import odeint

    sde = sde_of("vp")
    m = MIX.score_model(sde)
    z = sde.prior_sample((16, 2), generator=gen(4), dtype=torch.float64)
    x = ode_sample(m, None, z=z, eps=1e-3, rtol=1e-8, atol=1e-8).x

    def f(t, y):
        vt = t.expand(y.shape[0])
        return sde.ode_drift(y, vt, m.score(y, vt))

    back = odeint(f, x, torch.tensor([1e-3, 1.0], dtype=torch.float64), rtol=1e-8, atol=1e-8)[-1]
    torch.testing.assert_close(back, z, atol=1e-4, rtol=1e-4)


def test_steps_are_the_original_updates():
    sde = sde_of("vp")
    m = MIX.score_model(sde)
    x = torch.randn(6, 2, generator=gen(5), dtype=torch.float64)
    t = torch.full((6,), 0.4, dtype=torch.float64)
    s = m.score(x, t)
    # reverse diffusion: x_mean = x − (f − G² s)
    f, G = sde.discretize(x, t)
    _, mean = reverse_diffusion_step(m, sde, x, t, gen(0))
    torch.testing.assert_close(mean, x - (f - (G**2)[:, None] * s))
    # Euler–Maruyama: x_mean = x − (f − g² s)/N
    _, mean = euler_maruyama_step(m, sde, x, t, gen(0))
    fc, g = sde.sde(x, t)
    torch.testing.assert_close(mean, x - (fc - (g**2)[:, None] * s) / sde.N)
    # Langevin: step = 2α (snr ‖z‖/‖s‖)²
    noise = torch.randn(x.shape, generator=gen(0), dtype=torch.float64)
    _, mean = langevin_step(m, sde, x, t, 0.16, gen(0))
    idx = int(0.4 * 999)
    alpha = float(sde.alphas[idx])
    step = (0.16 * noise.norm(dim=1).mean() / s.norm(dim=1).mean()) ** 2 * 2 * alpha
    torch.testing.assert_close(mean, x + step * s)


def test_callback_progress_and_cancellation():
    m = MIX.score_model(sde_of("ve"))
    seen = []
    pc_sample(m, (4, 2), N=20, generator=gen(0), dtype=torch.float64, callback=lambda i, n: seen.append((i, n)))
    assert seen[0] == (1, 20) and seen[-1] == (20, 20) and len(seen) == 20

    class Cancelled(Exception):
        pass

    def cancel(i, n):
        if i == 5:
            raise Cancelled

    with pytest.raises(Cancelled):
        pc_sample(m, (4, 2), N=50, generator=gen(0), dtype=torch.float64, callback=cancel)
    with pytest.raises(Cancelled):
        ode_sample(m, (4, 2), generator=gen(0), dtype=torch.float64, callback=cancel)
    assert math.isfinite(float(pc_sample(m, (4, 2), N=10, dtype=torch.float64, generator=gen(1)).x.sum()))

"""The per-sample Dormand–Prince solver against closed forms and scipy's RK45."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from fpdiff.ode import ELEMENTARY, HAIRER_PI, StepControl, dopri5, error_norm

RATES = torch.tensor([0.5, 3.0, 20.0], dtype=torch.float64)


def _decay_and_wave(t, y, idx):
    """x' = −k x (2 components), w' = cos(k t): closed forms x0·e^{−kt}, sin(kt)/k."""
    k = RATES[idx]
    return -k[:, None] * y[0], torch.cos(k * t)


def _y0(b):
    return torch.ones(b, 2, dtype=torch.float64), torch.zeros(b, dtype=torch.float64)


@pytest.mark.parametrize("norm", ["rms", "mixed"])
def test_closed_forms_forward_and_backward(norm):
    sol = dopri5(_decay_and_wave, _y0(3), 0.0, 2.0, rtol=1e-9, atol=1e-12, norm=norm)
    torch.testing.assert_close(sol.y[0][:, 0], torch.exp(-2 * RATES), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(sol.y[1], torch.sin(2 * RATES) / RATES, rtol=1e-6, atol=1e-9)
    assert not sol.failed.any() and sol.calls == int(sol.nfe.max())
    # the stiffer samples took more steps, each sample its own
    assert sol.nfe[0] < sol.nfe[1] < sol.nfe[2]
    back = dopri5(_decay_and_wave, (sol.y[0], sol.y[1]), 2.0, 0.0, rtol=1e-9, atol=1e-12, norm=norm)
    torch.testing.assert_close(back.y[0], torch.ones(3, 2, dtype=torch.float64), rtol=1e-5, atol=0)


def test_a_sample_gets_the_same_answer_and_cost_alone_and_in_any_batch():
    together = dopri5(_decay_and_wave, _y0(3), 0.0, 2.0, rtol=1e-6, atol=1e-6)
    for i in range(3):
        alone = dopri5(lambda t, y, idx: _decay_and_wave(t, y, idx + i), _y0(1), 0.0, 2.0, rtol=1e-6, atol=1e-6)
        assert torch.equal(alone.y[0][0], together.y[0][i]) and torch.equal(alone.y[1][0], together.y[1][i])
        assert int(alone.nfe[0]) == int(together.nfe[i])


@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_same_steps_as_scipys_rk45_on_one_sample(tol):
    """Same method, error norm and step control as scipy's RK45: the same number of evaluations
    and the same answer to rounding."""
    sol = dopri5(_decay_and_wave, _y0(3), 0.0, 2.0, rtol=tol, atol=tol)
    for i, k in enumerate(RATES.tolist()):
        ref = solve_ivp(lambda t, y: np.concatenate([-k * y[:2], [math.cos(k * t)]]), (0.0, 2.0),
                        np.array([1.0, 1.0, 0.0]), rtol=tol, atol=tol, method="RK45")
        assert int(sol.nfe[i]) == ref.nfev
        assert abs(float(sol.y[1][i]) - ref.y[2, -1]) < 1e-12
        assert abs(float(sol.y[0][i, 0]) - ref.y[0, -1]) < 1e-12


def test_error_norms():
    err = (torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.tensor([2.0, 4.0]))
    one = (torch.ones(2, 2), torch.ones(2))
    torch.testing.assert_close(error_norm(err, one, "rms"), torch.tensor([math.sqrt(29 / 3), math.sqrt(16 / 3)]))
    torch.testing.assert_close(error_norm(err, one, "mixed"), torch.tensor([math.sqrt(12.5), 4.0]))
    with pytest.raises(ValueError, match="norm"):
        error_norm(err, one, "max")


def test_state_is_float64_and_the_input_untouched():
    x0 = torch.ones(2, 3)
    seen = []

    def f(t, y, idx):
        seen.append(y[0].dtype)
        return (-y[0].float(),)  # a float32 right-hand side, as a float32 network gives

    sol = dopri5(f, (x0,), 0.0, 1.0, rtol=1e-8, atol=1e-8)
    assert sol.y[0].dtype == torch.float64 and set(seen) == {torch.float64}
    assert torch.equal(x0, torch.ones(2, 3))
    torch.testing.assert_close(sol.y[0], torch.full((2, 3), math.exp(-1.0), dtype=torch.float64), rtol=1e-6, atol=0)


def test_a_sample_whose_step_underflows_is_marked_failed_and_the_others_finish():
    def f(t, y, idx):
        pole = torch.where(idx == 0, torch.full_like(t, 0.5), torch.full_like(t, 10.0))
        return (torch.ones_like(y[0]) / (t - pole)[:, None] ** 2,)

    sol = dopri5(f, (torch.zeros(2, 1, dtype=torch.float64),), 0.0, 1.0, rtol=1e-6, atol=1e-6)
    assert sol.failed.tolist() == [True, False]
    torch.testing.assert_close(sol.y[0][1, 0], torch.tensor(1 / 9.0 - 1 / 10.0, dtype=torch.float64))


def test_callback_sees_every_batched_call_and_can_cancel():
    calls = []
    sol = dopri5(_decay_and_wave, _y0(3), 0.0, 1.0, callback=calls.append)
    assert calls == list(range(1, sol.calls + 1))

    class Stop(Exception):
        pass

    def stop(n):
        if n >= 5:
            raise Stop

    with pytest.raises(Stop):
        dopri5(_decay_and_wave, _y0(3), 0.0, 1.0, callback=stop)


def test_step_control_rules():
    """h_new/h: elementary = scipy's 0.9·r^(−1/5) in [0.2, 10], no growth right after a rejection;
    Hairer's PI multiplies the accepted step's factor by r_old^0.04 with exponent 0.17."""
    r = torch.tensor([0.5, 0.5, 2.0, 0.0, 1e6], dtype=torch.float64)
    r_old = torch.tensor([1e-4, 0.3, 0.3, 0.3, 0.3], dtype=torch.float64)
    after_rejection = torch.tensor([False, True, False, False, False])
    torch.testing.assert_close(ELEMENTARY.factor(r, r_old, after_rejection),
                               torch.tensor([0.9 * 0.5**-0.2, 1.0, 0.9 * 2**-0.2, 10.0, 0.2], dtype=torch.float64))
    want = [0.9 * 0.5**-0.17 * 1e-4**0.04, 0.9 * 0.5**-0.17 * 0.3**0.04, 0.9 * 2**-0.17, 10.0, 0.2]
    torch.testing.assert_close(HAIRER_PI.factor(r, r_old, after_rejection), torch.tensor(want, dtype=torch.float64))
    assert StepControl() == ELEMENTARY and HAIRER_PI.beta == 0.04


def test_pi_control_solves_per_sample_to_tolerance():
    """The PI rule changes the steps, not the per-sample contract: closed forms to the tolerance,
    and a sample's answer and cost alone equal its answer and cost in the batch."""
    sol = dopri5(_decay_and_wave, _y0(3), 0.0, 2.0, rtol=1e-9, atol=1e-12, control=HAIRER_PI)
    torch.testing.assert_close(sol.y[0][:, 0], torch.exp(-2 * RATES), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(sol.y[1], torch.sin(2 * RATES) / RATES, rtol=1e-6, atol=1e-9)
    elementary = dopri5(_decay_and_wave, _y0(3), 0.0, 2.0, rtol=1e-9, atol=1e-12)
    assert not torch.equal(sol.nfe, elementary.nfe)  # a different step sequence
    for i in range(3):
        alone = dopri5(lambda t, y, idx: _decay_and_wave(t, y, idx + i), _y0(1), 0.0, 2.0, rtol=1e-9, atol=1e-12,
                       control=HAIRER_PI)
        assert torch.equal(alone.y[1][0], sol.y[1][i]) and int(alone.nfe[0]) == int(sol.nfe[i])

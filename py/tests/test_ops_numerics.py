"""Worker ops of the numerics area, called in-process: loss.eval, diagnostics.fpe_residual,
diagnostics.fisher, likelihood.nll, sample."""

from __future__ import annotations

import math

import pytest
import torch

from fpdiff import config as C
from fpdiff.ops import REGISTRY, Cancelled, OpContext, OpError, WorkerState
import fpdiff.ops.models  # noqa: F401  (model.load)
import fpdiff.ops.numerics  # noqa: F401

from _resolve import resolved


def _call(name, args, state, events=None):
    """The worker's own dispatch: the args are validated against the op's schema, then handled."""
    ctx = OpContext(request_id=1, op=name, state=state, emit_fn=(events.append if events is not None else lambda _e: None))
    spec = REGISTRY[name]
    return spec.run(spec.parse(args), ctx)


def _toy_state(dataset="mog1d", dim=1):
    exp = resolved({
        "name": "toy-ops", "sde": {"kind": "ve"},
        "model": {"kind": "mlp", "embedDim": 8, "timeHidden": [16], "xHidden": [16], "width": 16, "hidden": [32]},
        "data": {"kind": "toy", "dataset": dataset, "dim": dim},
        "loss": {"terms": [{"kind": "dsm", "reduce": "mean"},
                           {"kind": "highOrder", "order": 2, "estimator": "exact", "parts": ["frobenius"]}]},
    })
    state = WorkerState()
    _call("model.load", {"experiment": exp, "handle": "m", "device": "cpu", "seed": 0}, state)
    return state


def test_loss_eval_reports_every_term():
    state = _toy_state()
    res = _call("loss.eval", {"model": "m", "weights": "model", "n": 64, "batchSize": 32, "seed": 1}, state)
    assert set(res["terms"]) == {"dsm", "high_order.frobenius"}
    assert res["n"] == 64 and math.isfinite(res["loss"])
    assert res["loss"] == pytest.approx(sum(res["weighted"].values()), rel=1e-5)
    again = _call("loss.eval", {"model": "m", "weights": "model", "n": 64, "batchSize": 32, "seed": 1}, state)
    assert again["loss"] == res["loss"]  # seeded
    other = _call("loss.eval", {"model": "m", "n": 16, "t": 0.5,
                                "loss": {"terms": [{"kind": "scoreFpe", "mode": "vector", "div": "exact"}]}}, state)
    assert set(other["terms"]) == {"score_fpe.vector"}
    with pytest.raises(OpError) as err:
        _call("loss.eval", {"model": "m", "loss": {"terms": [{"kind": "highOrder", "order": 4}]}}, state)
    assert "args.loss" in str(err.value)


def test_fpe_residual_and_fisher_curves():
    state = _toy_state()
    events = []
    res = _call("diagnostics.fpe_residual", {"model": "m", "t": [0.1, 0.5, 1.0], "n": 32}, state, events)
    assert res["t"] == [0.1, 0.5, 1.0] and len(res["relative"]) == 3 and res["n"] == 32
    assert all(r > 0 for r in res["residual"])  # an untrained network does not solve the score FPE
    fish = _call("diagnostics.fisher", {"model": "m", "t": [0.5], "n": 16, "rtol": 1e-3, "atol": 1e-3}, state)
    assert len(fish["fisherOde"]) == 1 and fish["fisherOde"][0] > 0
    with pytest.raises(OpError):
        _call("diagnostics.fpe_residual", {"model": "m", "t": [0.0]}, state)


def test_likelihood_nll_and_sample():
    state = _toy_state("checkerboard", 2)
    x = torch.rand(8, 2) * 4 - 2
    res = _call("likelihood.nll", {"model": "m", "x": x, "rtol": 1e-3, "atol": 1e-3}, state)
    assert res["n"] == 8 and res["bpd"] is None and math.isfinite(res["nll"]) and res["nfe"] > 0
    assert res["perSample"].shape == (8,)
    s = _call("sample", {"model": "m", "n": 10, "method": "pc", "N": 20, "seed": 3}, state)
    assert s["x"].shape == (10, 2) and s["nfe"] == 40
    # the checkerboard's score is closed-form too (toys.Checkerboard)
    fish = _call("diagnostics.fisher", {"model": "m", "t": [0.5], "n": 8, "rtol": 1e-3, "atol": 1e-3}, state)
    assert fish["fisherModel"][0] > 0 and fish["fisherOde"][0] > 0
    s2 = _call("sample", {"model": "m", "n": 10, "method": "ode", "rtol": 1e-3, "atol": 1e-3}, state)
    assert s2["x"].shape == (10, 2) and torch.isfinite(s2["x"]).all()

    ctx = OpContext(request_id=1, op="sample", state=state, emit_fn=lambda _e: None)
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        spec = REGISTRY["sample"]
        spec.run(spec.parse({"model": "m", "n": 4, "method": "pc", "N": 50}), ctx)

"""Score-FPE weights given as shares of the loss at the start (`calibrate`, docs/score-fpe-scale.md):
the algebra, the measurement in a real training run, the record that a resumed run reuses, and the
config checks."""

from __future__ import annotations

import json
import os

import pytest
import torch

import _resolve as resolve
from fpdiff import config as C
from fpdiff import train as T
from fpdiff.data import make_batches
from fpdiff.losses import build_loss
from fpdiff.losses.calibration import CALIBRATION_FILE, measure_shares
from fpdiff._generated.types import ScoreFPETermCalibrate as Calibration
from fpdiff.losses.score_fpe import calibrated_weights

TINY_MLP = {"kind": "mlp", "embedDim": 16, "timeHidden": [32], "xHidden": [32], "width": 32, "hidden": [64]}
DSM = {"kind": "dsm", "weighting": "conventional", "reduce": "mean"}


def fpe(**kw):
    base = {"kind": "scoreFpe", "mode": "both", "alpha": 0.15, "beta": 0.01, "m": 2, "weighting": "ll", "div": "exact"}
    base.update(kw)
    return base


def toy(terms, *, n_iters=4, seed=5, batch=128):
    return resolve.experiment({
        "name": "toy/calibration",
        "sde": {"kind": "ve"},
        "model": dict(TINY_MLP),
        "data": {"kind": "toy", "dataset": "checkerboard"},
        "loss": {"terms": terms},
        "optim": {"kind": "adam", "lr": 1e-3, "warmup": 0, "gradClip": 1.0},
        "training": {"batchSize": batch, "nIters": n_iters, "logFreq": 1, "snapshotFreq": n_iters,
                     "snapshotFreqForPreemption": 2, "seed": seed, "deterministic": True},
    })


# ---------------------------------------------------------------------------------------------
# algebra


def share_of(alpha, beta, rest, vector, scalar):
    total = rest + alpha * vector + beta * scalar
    return alpha * vector / total, beta * scalar / total


def test_both_shares_are_met_exactly():
    cal = Calibration(vector_share=1e-3, scalar_share=2e-2)
    a, b = calibrated_weights(cal, rest=0.62, vector=488.0, scalar=193.0, alpha=0.15, beta=0.01, mode="both")
    sv, ss = share_of(a, b, 0.62, 488.0, 193.0)
    assert sv == pytest.approx(1e-3, rel=1e-12) and ss == pytest.approx(2e-2, rel=1e-12)


def test_one_share_keeps_the_other_weight():
    cal = Calibration(vector_share=0.25)
    a, b = calibrated_weights(cal, rest=2.0, vector=10.0, scalar=40.0, alpha=0.15, beta=0.01, mode="both")
    assert b == 0.01
    assert share_of(a, b, 2.0, 10.0, 40.0)[0] == pytest.approx(0.25, rel=1e-12)
    # mode "vector": the scalar term is not part of the loss at all
    a, _ = calibrated_weights(cal, rest=2.0, vector=10.0, scalar=40.0, alpha=0.15, beta=0.01, mode="vector")
    assert a * 10.0 / (2.0 + a * 10.0) == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize("rest,vector,msg", [(0.0, 1.0, "rest of the loss"), (1.0, 0.0, "vector term is 0.0")])
def test_degenerate_measurements_are_refused(rest, vector, msg):
    with pytest.raises(ValueError, match=msg):
        calibrated_weights(Calibration(vector_share=0.1), rest=rest, vector=vector, scalar=1.0, alpha=0.1, beta=0.1, mode="vector")


def wire_toy(terms):
    """Well-formed on the wire but refused by the DSL: what a raw client could send."""
    raw = resolve.resolved({"name": "toy/calibration", "sde": {"kind": "ve"}, "model": dict(TINY_MLP),
                            "data": {"kind": "toy", "dataset": "checkerboard"}, "loss": {"terms": [DSM, fpe()]}})
    raw["loss"]["terms"] = [dict(raw["loss"]["terms"][0]), *terms]
    return C.experiment_from_wire(raw)


def test_term_refuses_a_share_of_a_missing_term():
    full = resolve.resolved({"name": "x", "sde": {"kind": "ve"}, "model": dict(TINY_MLP), "data": {"kind": "toy", "dataset": "checkerboard"},
                             "loss": {"terms": [DSM, fpe()]}})["loss"]["terms"][1]
    with pytest.raises(ValueError, match="scalarShare"):
        build_loss(wire_toy([dict(full, mode="vector", calibrate={"scalarShare": 0.1, "batches": 4})]).loss)
    with pytest.raises(ValueError, match="vectorShare"):
        build_loss(wire_toy([dict(full, mode="scalar", calibrate={"vectorShare": 0.1, "batches": 4})]).loss)
    with pytest.raises(ValueError, match="and/or"):
        build_loss(wire_toy([dict(full, calibrate={"batches": 2})]).loss)


# ---------------------------------------------------------------------------------------------
# in training


def test_training_sets_alpha_beta_to_the_shares_and_records_them(tmp_path):
    shares = {"vectorShare": 1e-3, "scalarShare": 1e-2, "batches": 3}
    exp = toy([DSM, fpe(calibrate=shares)])
    events = []
    state, res = T.train(exp, str(tmp_path), callback=events.append, event_interval=0.0)
    assert res.status == "completed"
    cal = [e for e in events if e["type"] == "calibration"]
    assert len(cal) == 1 and cal[0]["source"] == "measured" and cal[0]["step"] == 0 and cal[0]["term"] == 1
    term = state.loss.terms[1]
    assert (term.alpha, term.beta) == (cal[0]["alpha"], cal[0]["beta"])
    # the preset's α = 0.15 is far from what a 0.1 % share asks for on a 2-D toy
    assert cal[0]["alpha"] < 0.15 / 10
    # re-measured on the same draws at the starting weights, α·vector and β·scalar have exactly the shares
    fresh = T.build_state(exp)
    batches = make_batches(exp.data, 128, 5)
    xs = [batches.batch(k) for k in range(3)]
    m = measure_shares(fresh.loss, fresh.score, xs, seed=5, start=0)
    assert m == pytest.approx(cal[0]["measured"], rel=1e-6)
    sv, ss = share_of(term.alpha, term.beta, m["rest"], m["vector"], m["scalar"])
    assert sv == pytest.approx(1e-3, rel=1e-6) and ss == pytest.approx(1e-2, rel=1e-6)
    saved = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert saved["terms"][0]["alpha"] == term.alpha and saved["terms"][0]["vectorShare"] == 1e-3
    # the metrics' total uses the calibrated weights
    first = [e for e in events if e["type"] == "metrics"][0]
    t = first["terms"]
    assert first["loss"] == pytest.approx(t["dsm"] + term.alpha * t["score_fpe.vector"] + term.beta * t["score_fpe.scalar"], rel=1e-5)


def test_a_resumed_run_keeps_its_starting_weights_and_matches_an_uninterrupted_one(tmp_path):
    exp = toy([DSM, fpe(mode="vector", calibrate={"vectorShare": 0.05, "batches": 2})], n_iters=4)
    whole, _ = T.train(exp, str(tmp_path / "whole"))
    part_dir = str(tmp_path / "part")
    T.train(exp, part_dir, max_steps=2)
    events = []
    resumed, res = T.train(exp, part_dir, resume=True, callback=events.append)
    cal = [e for e in events if e["type"] == "calibration"]
    assert res.steps == 2 and cal[0]["source"] == "recorded" and cal[0]["step"] == 0
    assert resumed.loss.terms[1].alpha == whole.loss.terms[1].alpha
    for a, b in zip(whole.network.parameters(), resumed.network.parameters()):
        assert torch.equal(a, b)


def test_fine_tuning_calibrates_at_the_checkpoint(tmp_path):
    base = toy([DSM], n_iters=3)
    T.train(base, str(tmp_path / "base"))
    ckpt = os.path.join(str(tmp_path / "base"), "checkpoints", "checkpoint_1.pth")
    tuned = toy([DSM, fpe(mode="vector", calibrate={"vectorShare": 0.01, "batches": 2})], n_iters=5)
    events = []
    T.train(tuned, str(tmp_path / "ft"), init=ckpt, callback=events.append)
    cal = [e for e in events if e["type"] == "calibration"]
    assert cal[0]["step"] == 3 and cal[0]["source"] == "measured"


# ---------------------------------------------------------------------------------------------
# config (the DSL's refusals are in test/dsl/fixtures/cases.json, shared with test_config.py)


def test_the_dsl_refuses_bad_calibrations():
    for term, msg in [
        (fpe(mode="vector", calibrate={"scalarShare": 0.1}), "no scalar term"),
        (fpe(mode="scalar", calibrate={"vectorShare": 0.1}), "no vector term"),
        (fpe(calibrate={"vectorShare": 0.6, "scalarShare": 0.4}), "below 1"),
        (fpe(calibrate={"vectorShare": 0.1, "extra": 1}), "extra"),
    ]:
        with pytest.raises(ValueError, match=msg):
            toy([DSM, term])
    with pytest.raises(ValueError, match="another term"):
        toy([fpe(calibrate={"vectorShare": 0.1})])


def test_training_refuses_a_share_of_nothing_naming_the_field(tmp_path):
    """Sent anyway (a raw client), a share with no other loss term is refused before any update."""
    raw = resolve.resolved({"name": "toy/calibration", "sde": {"kind": "ve"}, "model": dict(TINY_MLP),
                            "data": {"kind": "toy", "dataset": "checkerboard"}, "loss": {"terms": [fpe()]},
                            "training": {"batchSize": 64, "nIters": 2}})
    raw["loss"]["terms"][0]["calibrate"] = {"vectorShare": 0.1, "batches": 1}
    with pytest.raises(T.TrainingError) as info:
        T.train(C.experiment_from_wire(raw), str(tmp_path))
    assert info.value.field == "experiment.loss.terms[0].calibrate" and "rest of the loss" in info.value.message
    assert not (tmp_path / "checkpoints-meta").exists()

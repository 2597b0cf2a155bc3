"""Evaluation during training (fpdiff.evaluation.during_training): held-out losses every
evalFreq, samples and bits/dim at snapshots, TensorBoard files read back from disk."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from fpdiff import checkpoints as ck
from fpdiff import train as T
from fpdiff.data import ToyBatches, step_generator, step_seed
from fpdiff.evaluation.during_training import STREAM_EVAL, TrainingEvaluator
from fpdiff.evaluation.tensorboard import read_events
from fpdiff.models import build_network
import _resolve as resolve
from fpdiff.synthetic import write_synthetic_cifar10
from fpdiff.score import score_model
from fpdiff.sde import make_sde

TINY_MLP = {"kind": "mlp", "embedDim": 16, "timeHidden": [32], "xHidden": [32], "width": 32, "hidden": [64]}
DSM = {"kind": "dsm", "weighting": "conventional", "reduce": "mean"}


def toy(**training):
    return resolve.experiment({
        "name": "toy/evaltest", "sde": {"kind": "ve"}, "model": dict(TINY_MLP),
        "data": {"kind": "toy", "dataset": "checkerboard"},
        "loss": {"terms": [DSM, {"kind": "highOrder", "order": 2}]},
        "optim": {"kind": "adam", "lr": 1e-3, "warmup": 0, "gradClip": 1},
        "training": {"batchSize": 32, "nIters": 6, "logFreq": 1, "evalFreq": 3, "snapshotFreq": 3,
                     "snapshotFreqForPreemption": 100, "seed": 5, "snapshotBpd": 16, **training},
        "eval": {"batchSize": 8, "bpd": {"solver": "rk4"}},
        "sampling": {"method": "ode", "solver": "rk4"},
    })


def test_toy_run_evaluates_on_the_original_schedule_and_logs_tensorboard(tmp_path):
    exp = toy()
    events = []
    state, res = T.train(exp, str(tmp_path), callback=events.append, event_interval=0.0, hooks=TrainingEvaluator(exp))
    assert res.status == "completed"
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [0, 3]
    assert set(evals[0]["terms"]) == {"dsm", "high_order.frobenius", "high_order.trace"}
    # the held-out loss at k = 3 is the EMA model's loss (EMA as saved after update 3) on held-out
    # batch 3, drawn from the evaluation stream — recomputed here from the snapshot file
    snap = ck.load_checkpoint(ck.snapshot_path(str(tmp_path), 1))
    assert snap.step == 4
    net = build_network(exp.model, exp.data)
    ck.restore(net, snap, weights="ema")
    net.eval()
    score = score_model(net, make_sde(exp.sde), exp.model)
    x = ToyBatches(exp.data, 32, step_seed(5, 0, STREAM_EVAL)).batch(3)
    want = state.loss(score, x, generator=step_generator(5, 3, STREAM_EVAL), create_graph=False)
    assert evals[1]["loss"] == pytest.approx(float(want.total), rel=1e-6)
    # samples at the snapshot (k = 3) and at the end (labelled nIters = 6, as the original's last step)
    samples = [e for e in events if e["type"] == "samples"]
    assert [e["step"] for e in samples] == [3, 6]
    for e in samples:
        arr = np.load(e["path"])["samples"]
        assert arr.shape == (32, 2) and np.isfinite(arr).all()
        assert os.path.basename(os.path.dirname(e["path"])) == f"iter_{e['step']}"
        assert Image.open(e["png"]).size[0] > 100
    nll = [e for e in events if e["type"] == "bpd"]
    assert [e["step"] for e in nll] == [3, 6] and nll[0]["metric"] == "nll" and nll[0]["n"] == 16
    assert all(np.isfinite(e["value"]) and e["stderr"] > 0 for e in nll)
    # TensorBoard: the originals' tags, read back from the event files
    tb = read_events(str(tmp_path / "tensorboard"))
    by_tag: dict = {}
    for r in tb:
        by_tag.setdefault(r["tag"], []).append(r)
    assert [r["step"] for r in by_tag["training_loss"]] == list(range(6))
    assert [r["step"] for r in by_tag["eval_loss"]] == [0, 3]
    assert by_tag["eval_loss"][1]["value"] == pytest.approx(evals[1]["loss"], rel=1e-6)
    assert [r["value"] for r in by_tag["snapshot/nll"]] == pytest.approx([e["value"] for e in nll], rel=1e-6)
    assert "train/high_order.trace" in by_tag and "eval/dsm" in by_tag and "lr" in by_tag


def test_snapshot_likelihood_uses_the_same_draws_every_time(tmp_path):
    exp = toy()
    state = T.build_state(exp)
    ev = TrainingEvaluator(exp)
    ev.bind(state, str(tmp_path), lambda e: None)
    a = ev.snapshot_likelihood(10)
    b = ev.snapshot_likelihood(20)
    assert a["value"] == b["value"] and a["stderr"] == b["stderr"]


def test_image_run_writes_a_sample_grid_and_bpd(tmp_path):
    data = write_synthetic_cifar10(str(tmp_path / "data"), 8, seed=1)[0]
    exp = resolve.experiment({
        "name": "img/evaltest", "sde": {"kind": "ve"},
        "model": {"kind": "ncsnpp", "nf": 8, "chMult": [1, 2], "numResBlocks": 1, "attnResolutions": [16]},
        "data": {"kind": "cifar10", "path": data},
        "loss": {"terms": [{"kind": "dsm", "weighting": "likelihood", "reduce": "sum"}]},
        "optim": {"kind": "adam", "lr": 2e-4, "warmup": 0, "gradClip": 1},
        "training": {"batchSize": 4, "nIters": 3, "logFreq": 1, "evalFreq": 2, "snapshotFreq": 1,
                     "snapshotFreqForPreemption": 100, "seed": 1, "snapshotSamples": 5, "snapshotBpd": 2},
        "eval": {"batchSize": 2, "bpd": {"rtol": 0.1, "atol": 0.1}},
        "sampling": {"method": "pc", "N": 3},
    })
    events = []
    T.train(exp, str(tmp_path / "run"), callback=events.append, hooks=TrainingEvaluator(exp))
    assert [e["step"] for e in events if e["type"] == "eval"] == [0, 2]
    samples = [e for e in events if e["type"] == "samples"]
    assert [e["step"] for e in samples] == [1, 3]
    arr = np.load(samples[0]["path"])["samples"]
    assert arr.dtype == np.uint8 and arr.shape == (5, 32, 32, 3)
    png = Image.open(samples[0]["png"])
    # make_grid with √5 → 2 columns, 3 rows, 2-pixel padding
    assert png.size == (2 * 34 + 2, 3 * 34 + 2) and png.mode == "RGB"
    bpd = [e for e in events if e["type"] == "bpd"]
    assert [e["metric"] for e in bpd] == ["bpd", "bpd"] and all(e["n"] == 2 for e in bpd)
    assert all(2.0 < e["value"] < 40.0 for e in bpd)
    tb = read_events(str(tmp_path / "run" / "tensorboard"))
    imgs = [r for r in tb if r["tag"] == "samples"]
    assert [r["step"] for r in imgs] == [1, 3]
    h, w, encoded = imgs[0]["image"]
    assert (w, h) == png.size
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB")), np.asarray(png))


def test_tensorboard_can_be_turned_off(tmp_path):
    exp = toy(tensorboard=False, snapshotBpd=0, snapshotSampling=False)
    T.train(exp, str(tmp_path), hooks=TrainingEvaluator(exp))
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "samples").exists()


def test_a_non_finite_held_out_loss_or_snapshot_nll_is_a_warning_not_an_event(tmp_path):
    """A diverging EMA model: the events' numbers are JSON numbers (no NaN), so the evaluator says
    it in a warning and the training loss decides whether the run stops (fpdiff.train)."""
    import torch

    exp = toy()
    state = T.build_state(exp, "cpu")
    ev = TrainingEvaluator(exp)
    events = []
    ev.bind(state, str(tmp_path), events.append)
    try:
        assert ev.eval_losses(0)["type"] == "eval"  # finite: an event
        with torch.no_grad():
            for p in state.ema.shadow_params:
                p.fill_(float("nan"))
        state.step += 1  # the evaluator copies the EMA weights again at a new step
        assert ev.eval_losses(1) is None
        assert ev.snapshot_likelihood(1) is None
    finally:
        ev.close()
    kinds = [e["type"] for e in events]
    assert kinds.count("eval") == 1 and "bpd" not in kinds
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("held-out loss of the EMA model is not finite" in w and "loss=nan" in w for w in warnings)
    assert any("snapshot nll of the EMA model is not finite" in w for w in warnings)

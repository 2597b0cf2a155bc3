"""train.run and the toy / plot ops through a real worker process over its ZeroMQ socket."""

from __future__ import annotations

import math
import os

import pytest
import torch

from fpdiff import checkpoints as ck

from _resolve import resolved
from _worker_client import WorkerClient, WorkerError

TINY_MLP = {"kind": "mlp", "embedDim": 16, "timeHidden": [32], "xHidden": [32], "width": 32, "hidden": [64]}


def experiment(name="toy/w", n_iters=8, lr=1e-3, warmup=0, clip=1, meta=4, snap=4, log=2, dataset="checkerboard"):
    return resolved({
        "name": name,
        "sde": {"kind": "ve"},
        "model": dict(TINY_MLP),
        "data": {"kind": "toy", "dataset": dataset},
        "loss": {"terms": [{"kind": "dsm", "reduce": "mean"}]},
        "optim": {"kind": "adam", "lr": lr, "warmup": warmup, "gradClip": clip},
        "training": {"batchSize": 128, "nIters": n_iters, "logFreq": log, "snapshotFreq": snap,
                     "snapshotFreqForPreemption": meta, "seed": 0, "deterministic": True},
        "sampling": {"method": "ode", "rtol": 1e-3, "atol": 1e-3},
    })


@pytest.fixture(scope="module")
def worker():
    w = WorkerClient()
    yield w
    w.close()


def test_train_run_events_result_and_model_handle(worker, tmp_path):
    events = []
    res = worker.call("train.run", {"experiment": experiment(), "workdir": str(tmp_path), "handle": "m1",
                                    "eventIntervalSeconds": 0}, events.append)
    assert res["handle"] == "m1" and res["status"] == "completed" and res["step"] == 8 and res["steps"] == 8
    assert set(res) == {"handle", "status", "step", "steps", "seconds", "lastMetrics", "checkpoints"}
    types = {e["type"] for e in events}
    # evaluation during training (default on): held-out losses at k % evalFreq == 0, samples at snapshots
    assert types == {"progress", "metrics", "checkpoint", "eval", "samples"}
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == [0, 2, 4, 6]
    assert set(metrics[0]) == {"type", "step", "loss", "terms", "gradNorm", "lr"}
    saved = [e for e in events if e["type"] == "checkpoint"]
    assert [(c["kind"], c["step"]) for c in saved] == [("meta", 5), ("snapshot", 5), ("snapshot", 8), ("meta", 8)]
    assert [dict(c, type="checkpoint") for c in res["checkpoints"]] == saved
    latest = {c["path"]: c for c in saved}  # the meta file is rewritten; each path's last event holds
    assert sorted(os.path.relpath(p, tmp_path) for p in latest) == [
        "checkpoints-meta/checkpoint.pth", "checkpoints/checkpoint_1.pth", "checkpoints/checkpoint_2.pth"]
    for path, c in latest.items():
        loaded = ck.load_checkpoint(path)
        assert loaded.sha256 == c["sha256"] and loaded.step == c["step"] and loaded.bytes == c["bytes"]
    assert res["lastMetrics"]["step"] == 7

    # the registered model serves the toy ops right away
    nll = worker.call("toy.nll", {"model": "m1", "n": 64, "rtol": 1e-3, "atol": 1e-3})
    assert nll["floor"] == pytest.approx(math.log(32)) and nll["floorMethod"] == "exact"
    assert math.isfinite(nll["nll"]) and nll["gap"] == pytest.approx(nll["nll"] - math.log(32)) and nll["step"] == 8
    per = nll["perSample"]
    assert per.dtype == torch.float64 and per.shape == (64,) and float(per.mean()) == pytest.approx(nll["nll"])
    again = worker.call("toy.nll", {"model": "m1", "n": 64, "rtol": 1e-3, "atol": 1e-3})
    assert torch.equal(again["perSample"], per)  # the same test points: pairable across models
    dens = worker.call("toy.density", {"model": "m1", "n": 8, "rtol": 1e-3, "atol": 1e-3})
    assert [a.shape[0] for a in dens["axes"]] == [8, 8] and dens["logp"].shape == (8, 8)
    assert torch.isfinite(dens["logp"]).all()
    # 8 cells of side 1 tiling [−4, 4]² (the squares' edges are cell edges)
    assert float(dens["axes"][0][0]) == pytest.approx(-3.5) and float(dens["axes"][1][-1]) == pytest.approx(3.5)
    tl = dens["trueLogp"]
    on = tl[torch.isfinite(tl)]
    assert on.numel() == 32 and torch.allclose(on, torch.full_like(on, -math.log(32)))
    mass = float((dens["logp"].double().exp() * torch.isfinite(tl)).sum())  # cell area 1
    assert dens["massOnSupport"] == pytest.approx(mass, rel=1e-5) and 0 < dens["massOnSupport"] <= dens["massInGrid"]
    assert dens["solver"] == "dopri5"
    diag = worker.call("toy.diagnostics", {"model": "m1", "t": [1e-3, 0.1, 1.0], "n": 16, "ode": False})
    assert diag["t"] == [1e-3, 0.1, 1.0] and diag["fisherOde"] is None and diag["n"] == 16
    for k in ("residual", "dtScore", "gradPhi", "sigmaScore", "sigmaScoreTrue", "scoreError"):
        assert len(diag[k]) == 3 and all(math.isfinite(v) and v >= 0 for v in diag[k]), k
    with_ode = worker.call("toy.diagnostics", {"model": "m1", "t": [0.5], "n": 4, "rtol": 1e-3, "atol": 1e-3})
    assert len(with_ode["fisherOde"]) == 1 and with_ode["fisherOde"][0] > 0
    smp = worker.call("toy.samples", {"model": "m1", "n": 32})
    assert smp["method"] == "ode" and smp["x"].shape == (32, 2) and smp["nfe"] > 0
    png = worker.call("plot.toy", {"path": str(tmp_path / "toy.png"), "panels": [
        {"kind": "density", "title": "model", "axes": dens["axes"], "logp": dens["logp"]},
        {"kind": "density", "title": "truth", "axes": dens["axes"], "logp": dens["trueLogp"]},
        {"kind": "samples", "x": smp["x"]},
        {"kind": "lines", "title": "residual", "logx": True, "logy": True,
         "series": [{"label": "m1", "x": diag["t"], "y": diag["residual"], "color": "C0"},
                    {"x": diag["t"], "y": diag["gradPhi"], "style": "--", "color": "C0"}]},
        {"kind": "bars", "labels": ["a", "b"], "values": [-0.1, 0.05], "errors": [0.02, 0.03]}], "panelSize": 3})
    assert png["bytes"] > 1000 and os.path.isfile(png["path"])
    lines = worker.call("plot.lines", {"path": str(tmp_path / "l.png"), "series": [{"label": "nll", "x": [0, 1], "y": [4.0, 3.9]}],
                                       "hline": {"y": math.log(32), "label": "floor"}})
    assert lines["bytes"] > 1000
    data = worker.call("toy.data", {"dataset": "mog1d", "n": 10, "seed": 3})
    assert data["x"].shape == (10, 1) and data["entropy"] is None


def test_cancel_writes_meta_then_resume_continues(worker, tmp_path):
    exp = experiment(name="toy/c", n_iters=100000, meta=100000, snap=100000, log=1)
    rid = worker.send("train.run", {"experiment": exp, "workdir": str(tmp_path), "eventIntervalSeconds": 0})
    events = []
    cancelled = {"sent": False}

    def on_event(e):
        events.append(e)
        if e["type"] == "progress" and e["step"] >= 2 and not cancelled["sent"]:
            cancelled["sent"] = True
            worker.send("cancel", {"target": rid})

    with pytest.raises(WorkerError) as info:
        worker.wait(rid, on_event)
    assert info.value.code == "CANCELLED"
    last = [e for e in events if e["type"] == "checkpoint"][-1]
    assert last["kind"] == "meta" and last["step"] >= 2
    meta = ck.load_checkpoint(ck.meta_checkpoint_path(str(tmp_path)))
    assert meta.step == last["step"] and meta.sha256 == last["sha256"]
    res = worker.call("train.run", {"experiment": exp, "workdir": str(tmp_path), "resume": True, "maxSteps": 2})
    assert res["status"] == "stopped" and res["step"] == meta.step + 2 and res["steps"] == 2
    assert res["lastMetrics"]["step"] == meta.step + 1
    # the cancelled model was registered under its handle (the experiment's name)
    assert worker.call("toy.samples", {"model": "toy/c", "n": 4, "method": "pc", "N": 5})["x"].shape == (4, 2)


def test_huge_learning_rate_answers_diverged(worker, tmp_path):
    exp = experiment(name="toy/d", n_iters=50, lr=1e10, warmup=100000, clip=-1, meta=1, snap=1000, log=1)
    events = []
    with pytest.raises(WorkerError) as info:
        worker.call("train.run", {"experiment": exp, "workdir": str(tmp_path)}, events.append)
    assert info.value.code == "DIVERGED"
    saved = [e for e in events if e["type"] == "checkpoint"]
    assert saved and saved[-1]["path"] in info.value.message and "diverged at step" in info.value.message
    last = ck.load_checkpoint(saved[-1]["path"])
    assert last.sha256 == saved[-1]["sha256"] and all(torch.isfinite(t).all() for t in last.model.values())


def test_bad_requests_name_the_field(worker, tmp_path):
    exp = experiment()
    bad = dict(exp, training=dict(exp["training"], batchSize=0))
    cases = [
        ({"experiment": bad, "workdir": str(tmp_path)}, "args.experiment.training.batchSize"),
        ({"experiment": exp, "workdir": str(tmp_path), "typo": 1}, "args.typo"),
        ({"experiment": exp, "workdir": str(tmp_path), "init": {"checkpoint": str(tmp_path / "none.pth")}}, "args.init.checkpoint"),
        ({"experiment": exp, "workdir": str(tmp_path), "maxSteps": -1}, "args.maxSteps"),
    ]
    for args, field in cases:
        with pytest.raises(WorkerError) as info:
            worker.call("train.run", args)
        assert info.value.code == "BAD_REQUEST" and info.value.data.get("field") == field, info.value.data
    with pytest.raises(WorkerError) as info:
        worker.call("toy.nll", {"model": "nope"})
    assert info.value.code == "BAD_REQUEST" and "no model 'nope'" in info.value.message
    worker.call("train.run", {"experiment": experiment(name="toy/b", n_iters=1), "workdir": str(tmp_path / "b")})
    for args, field in [({"model": "toy/b", "t": [0.0, 0.5]}, "args.t[0]"), ({"model": "toy/b", "t": []}, "args.t"),
                        ({"model": "toy/b", "t": [0.5], "typo": 1}, "args.typo"), ({"model": "not-loaded", "t": [0.5]}, "args.model")]:
        with pytest.raises(WorkerError) as info:
            worker.call("toy.diagnostics", args)
        assert info.value.code == "BAD_REQUEST" and info.value.data.get("field") == field, info.value.data
    with pytest.raises(WorkerError) as info:
        worker.call("toy.density", {"model": "toy/b", "gridLo": 1, "gridHi": 0})
    assert info.value.data.get("field") == "args.gridLo"

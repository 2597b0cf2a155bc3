"""The evaluation-at-scale ops end to end through a real worker and its ZeroMQ socket: reference
statistics of a synthetic CIFAR-10 (official python format) and FID / IS / KID of a small NCSN++'s
PC samples against them, with an Inception of random weights (the official file cannot be
downloaded here; the op says so in its answer). Numbers are checked against fpdiff.evaluation.fid
recomputed from the units the op wrote."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import _resolve as resolve
from _worker_client import WorkerClient, WorkerError
from fpdiff.evaluation import fid as F
from fpdiff.evaluation.shards import WorkDir

TINY = {"kind": "ncsnpp", "nf": 8, "chMult": [1, 2], "numResBlocks": 1, "attnResolutions": [16]}


@pytest.fixture(scope="module")
def worker():
    w = WorkerClient(threads=2)
    yield w
    w.close()


def test_fid_stats_and_fid_of_samples_through_the_worker(worker, tmp_path):
    data = worker.call("data.synthetic", {"path": str(tmp_path / "cifar"), "imagesPerFile": 6, "seed": 4})["path"]
    weights = tmp_path / F.WEIGHTS_FILE
    torch.save(F.random_weights(0), str(weights))
    stats = tmp_path / "ref.npz"
    events = []
    ref = worker.call("eval.fid_stats", {"data": {"kind": "cifar10", "path": data}, "split": "test", "out": str(stats),
                                         "inception": str(weights), "batchSize": 4, "device": "cpu",
                                         "eventIntervalSeconds": 0}, on_event=events.append)
    assert ref["path"] == str(stats) and ref["n"] == 6 and ref["pool"] is True and ref["split"] == "test"
    assert ref["inception"]["verified"] is False and ref["resize"] == "tf1" and ref["world"] == 1
    assert events[-1] == {**events[-1], "done": 6, "total": 6, "unit": "images"}
    saved = F.load_stats(str(stats))
    assert saved.n == 6 and saved.pool.shape == (6, 2048)

    exp = resolve.resolved({"name": "t/fid", "sde": {"kind": "ve"}, "model": TINY,
                            "data": {"kind": "cifar10", "path": data}, "loss": {"terms": [{"kind": "dsm"}]}})
    handle = worker.call("model.load", {"experiment": exp, "device": "cpu"})["handle"]
    args = {"model": handle, "n": 5, "batchSize": 2, "out": str(tmp_path / "fid"), "stats": str(stats),
            "inception": str(weights), "method": "pc", "N": 2, "seed": 7}
    res = worker.call("eval.fid", args)
    assert res["n"] == 5 and res["referenceN"] == 6 and res["nfe"]["units"] == 3
    assert "not the official" in res["warning"]
    # the metrics are those of the features the op logged, against the reference file
    wd = WorkDir(str(tmp_path / "fid"), {}, main=False)  # read only
    recs = wd.finished()
    pool = np.concatenate([np.load(wd.arrays_path(i))["pool_3"] for i in sorted(recs)])
    logits = np.concatenate([np.load(wd.arrays_path(i))["logits"] for i in sorted(recs)])
    assert pool.shape == (5, 2048)
    want = F.metrics(pool, logits, saved)
    assert res["fid"] == pytest.approx(want["fid"], rel=1e-9) and res["fid"] >= 0
    assert res["kid"]["mean"] == pytest.approx(want["kid"]["mean"], rel=1e-9)
    assert res["inceptionScore"] == pytest.approx(want["inception_score"], rel=1e-9)
    # asked again: every unit is there; the same answer without sampling
    again = worker.call("eval.fid", args)
    assert again["fid"] == res["fid"]


def test_refusals_name_the_field(worker, tmp_path):
    data = worker.call("data.synthetic", {"path": str(tmp_path / "cifar"), "imagesPerFile": 2, "seed": 1})["path"]
    exp = resolve.resolved({"name": "t/fid2", "sde": {"kind": "ve"}, "model": TINY,
                            "data": {"kind": "cifar10", "path": data}, "loss": {"terms": [{"kind": "dsm"}]}})
    handle = worker.call("model.load", {"experiment": exp, "device": "cpu"})["handle"]
    cases = [
        ({"model": handle, "n": 2, "out": str(tmp_path / "a"), "stats": str(tmp_path / "none.npz")}, "args.stats"),
        ({"model": handle, "n": 2, "out": str(tmp_path / "b"), "stats": str(tmp_path / "none.npz"),
          "inception": str(tmp_path / "no-weights.pth")}, "args.stats"),
        ({"model": handle, "n": 1, "out": str(tmp_path / "c"), "stats": "x.npz"}, "args.n"),
        ({"model": "nope", "out": str(tmp_path / "d"), "stats": "x.npz"}, "args.model"),
    ]
    for args, field in cases:
        with pytest.raises(WorkerError) as info:
            worker.call("eval.fid", args)
        assert info.value.code == "BAD_REQUEST" and info.value.data.get("field") == field, info.value.data
    np.savez(str(tmp_path / "ref.npz"), mu=np.zeros(2048), sigma=np.eye(2048), n=3)
    with pytest.raises(WorkerError) as info:
        worker.call("eval.fid", {"model": handle, "n": 2, "out": str(tmp_path / "e"), "stats": str(tmp_path / "ref.npz"),
                                 "inception": str(tmp_path / "no-weights.pth")})
    assert info.value.data.get("field") == "args.inception" and "no-weights.pth" in info.value.message
    with pytest.raises(WorkerError) as info:
        worker.call("eval.fid_stats", {"data": {"kind": "cifar10", "path": str(tmp_path / "nothing")},
                                       "out": str(tmp_path / "s.npz")})
    assert info.value.data.get("field") == "args.data.path"

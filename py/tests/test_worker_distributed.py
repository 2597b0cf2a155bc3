"""The worker as a two-rank job under ``fpdiff.launch`` (gloo, CPU), driven over its real socket:
rank 0 serves, both ranks train; cancel stops both; a killed rank fails the job at once; shutdown
leaves no process behind."""

from __future__ import annotations

import os
import signal
import time

import pytest

import _resolve as resolve
from _worker_client import WorkerClient, WorkerError

TINY_MLP = {"kind": "mlp", "embedDim": 16, "timeHidden": [32], "xHidden": [32], "width": 32, "hidden": [64]}


def experiment(n_iters=4, meta=1000):
    return resolve.resolved({"name": "toy/wdist", "sde": {"kind": "ve"}, "model": dict(TINY_MLP),
            "data": {"kind": "toy", "dataset": "checkerboard"},
            "loss": {"terms": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"}]},
            "optim": {"kind": "adam", "lr": 1e-3, "warmup": 0, "gradClip": 1},
            "training": {"batchSize": 64, "nIters": n_iters, "logFreq": 1, "snapshotFreq": 100000,
                         "snapshotFreqForPreemption": meta, "seed": 1, "deterministic": True}})


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pids) -> list[int]:
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(p)
        except OSError:
            pass
    return out


@pytest.fixture
def job():
    w = WorkerClient(nproc=2, env={"FPD_DIST_TIMEOUT": "60"})
    yield w
    try:
        w.close()
    finally:
        if w.proc.poll() is None:
            os.killpg(w.proc.pid, signal.SIGKILL)


def test_rank_0_serves_and_both_ranks_train_then_shutdown_leaves_nothing(job, tmp_path):
    assert job.ready["world"] == 2
    ranks = descendants(job.proc.pid)
    assert len([p for p in ranks]) >= 2  # the two worker ranks under the launcher
    events = []
    res = job.call("train.run", {"experiment": experiment(), "workdir": str(tmp_path / "run"), "device": "cpu"},
                   on_event=events.append)
    assert res["status"] == "completed" and res["step"] == 4
    assert sorted(e["step"] for e in events if e["type"] == "metrics") == [0, 1, 2, 3]
    # a rank-0-only op on the trained model, then a second collective op: both ranks still in step
    out = job.call("toy.data", {"dataset": "checkerboard", "n": 8})
    assert out["x"].shape == (8, 2)
    res2 = job.call("train.run", {"experiment": experiment(n_iters=6), "workdir": str(tmp_path / "run"),
                                  "device": "cpu", "resume": True})
    assert res2["step"] == 6 and res2["steps"] == 2
    launcher = job.proc.pid
    job.close()
    assert job.proc.returncode == 0
    time.sleep(0.5)
    assert alive(ranks) == [] and descendants(launcher) == []


def test_cancel_stops_every_rank_and_the_job_keeps_serving(job, tmp_path):
    rid = job.send("train.run", {"experiment": experiment(n_iters=10_000_000), "workdir": str(tmp_path / "run"),
                                 "device": "cpu"})
    seen = []

    def on_event(e):
        seen.append(e)
        if e["type"] == "progress" and e["step"] >= 3 and not any(x.get("sent") for x in seen):
            seen.append({"type": "sent", "sent": True})
            job.send("cancel", {"target": rid})

    with pytest.raises(WorkerError) as info:
        job.wait(rid, on_event=on_event, timeout=120)
    assert info.value.code == "CANCELLED"
    meta = [e for e in seen if e["type"] == "checkpoint" and e["kind"] == "meta"]
    assert meta and "resumes it" in info.value.message
    # both ranks left the loop: a new collective op runs to completion
    res = job.call("train.run", {"experiment": experiment(n_iters=meta[-1]["step"] + 2), "workdir": str(tmp_path / "run"),
                                 "device": "cpu", "resume": True}, timeout=120)
    assert res["steps"] == 2


def test_a_killed_rank_fails_the_job_within_seconds_and_no_process_remains(job, tmp_path):
    ranks = descendants(job.proc.pid)
    rid = job.send("train.run", {"experiment": experiment(n_iters=10_000_000), "workdir": str(tmp_path / "run"),
                                 "device": "cpu"})
    first = []
    t_end = time.monotonic() + 60
    while not first and time.monotonic() < t_end:  # wait until training runs on both ranks
        try:
            job.wait(rid, on_event=first.append, timeout=1)
        except TimeoutError:
            pass
    rank0 = job.ready["pid"]
    follower = [p for p in ranks if p != rank0 and p in descendants(job.proc.pid)]
    follower = [p for p in follower if open(f"/proc/{p}/cmdline").read().find("fpdiff.worker") >= 0]
    assert follower
    t0 = time.monotonic()
    os.kill(follower[0], signal.SIGKILL)
    with pytest.raises((WorkerError, RuntimeError)):
        job.wait(rid, timeout=60)
    job.proc.wait(timeout=60)
    elapsed = time.monotonic() - t0
    assert job.proc.returncode != 0
    assert elapsed < 30, f"{elapsed:.1f} s from the kill to the job's end"
    time.sleep(0.5)
    assert alive(ranks) == []


def test_whole_split_bpd_on_two_ranks_equals_one_process(job, tmp_path):
    data = job.call("data.synthetic", {"path": str(tmp_path / "data"), "imagesPerFile": 6, "seed": 2})["path"]
    exp = resolve.resolved({"name": "img/bpd2", "sde": {"kind": "ve"},
           "model": {"kind": "ncsnpp", "nf": 8, "chMult": [1, 2], "numResBlocks": 1, "attnResolutions": [16]},
           "data": {"kind": "cifar10", "path": data}, "loss": {"terms": [{"kind": "dsm"}]}})
    args = {"n": 5, "batchSize": 2, "repeats": 1, "solver": "euler", "steps": 4, "seed": 1}
    handle = job.call("model.load", {"experiment": exp, "device": "cpu"})["handle"]
    events = []
    two = job.call("eval.bpd_dataset", {"model": handle, "out": str(tmp_path / "two"), **args}, on_event=events.append)
    assert two["world"] == 2 and two["complete"] and two["images"] == 5
    assert events and events[-1]["done"] == 5 and events[-1]["unit"] == "images"
    one_worker = WorkerClient()
    try:
        h1 = one_worker.call("model.load", {"experiment": exp, "device": "cpu"})["handle"]
        one = one_worker.call("eval.bpd_dataset", {"model": h1, "out": str(tmp_path / "one"), **args})
    finally:
        one_worker.close()
    assert one["world"] == 1
    # the same units from the same draws; the ranks' single-threaded products may round differently
    assert two["bpd"] == pytest.approx(one["bpd"], rel=1e-5)
    assert [r["bpd"] for r in two["repeats"]] == pytest.approx([r["bpd"] for r in one["repeats"]], rel=1e-5)

"""Distributed training on real processes: ``fpdiff.launch`` (PyTorch's elastic launcher) starts
two ranks with the gloo backend on the CPU; the tests compare them with one process drawing the
same samples, kill a rank, stop a job, and resume across process counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fpdiff import config as C
from fpdiff import distributed as D
from fpdiff import train as T
from fpdiff.data import STREAM_DROPOUT, STREAM_LOSS, make_batches
from fpdiff.losses.calibration import CALIBRATION_FILE, calibrate, calibrated_terms

import _resolve as resolve

PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(PY_DIR, "tests", "_ddp_job.py")

TINY_MLP = {"kind": "mlp", "embedDim": 16, "timeHidden": [32], "xHidden": [32], "width": 32, "hidden": [64]}
DSM = {"kind": "dsm", "weighting": "conventional", "reduce": "mean"}
LOSSES = {
    "dsm": [DSM],
    "order2": [DSM, {"kind": "highOrder", "order": 2}],
    "order3": [DSM, {"kind": "highOrder", "order": 3}],
    "dsm_fpe": [DSM, {"kind": "scoreFpe", "mode": "vector", "weighting": "convention", "div": "exact"}],
    # 'both' adds the scalar term, an L2 norm over the batch: with W ranks it is the mean of the
    # shards' norms (docs/contracts.md), which is what the reference below computes too
    "dsm_fpe_both": [DSM, {"kind": "scoreFpe", "mode": "both", "div": "exact", "dt": {"finiteDifference": {"hs": 1e-3, "hd": 5e-4}}}],
    # α from its share of the loss, measured by every rank on the same global batches
    "dsm_fpe_calibrated": [DSM, {"kind": "scoreFpe", "mode": "vector", "weighting": "convention", "div": "exact",
                                 "calibrate": {"vectorShare": 0.05, "batches": 2}}],
}


def wire(terms, *, n_iters=5, batch=64, seed=3, meta=2, snap=100, dataset="checkerboard"):
    """The experiment as the worker receives it: resolved by the TypeScript DSL."""
    return resolve.resolved({"name": "toy/ddp", "sde": {"kind": "ve"}, "model": dict(TINY_MLP),
            "data": {"kind": "toy", "dataset": dataset}, "loss": {"terms": terms},
            "optim": {"kind": "adam", "lr": 1e-3, "warmup": 0, "gradClip": 1},
            "training": {"batchSize": batch, "nIters": n_iters, "logFreq": 1, "snapshotFreq": snap,
                         "snapshotFreqForPreemption": meta, "seed": seed, "deterministic": True}})


def launch(tmp_path, spec: dict, nproc: int = 2, timeout: float = 240.0, wait: bool = True):
    spec = {"workdir": str(tmp_path / "run"), "out": str(tmp_path / "out"), **spec}
    path = tmp_path / f"spec{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": PY_DIR, "OMP_NUM_THREADS": "1", "FPD_DIST_TIMEOUT": "60"}
    cmd = [sys.executable, "-m", "fpdiff.launch", "--nproc", str(nproc), "--", JOB, str(path)]
    proc = subprocess.Popen(cmd, cwd=PY_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if not wait:
        return proc
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def read_events(tmp_path):
    return json.loads((tmp_path / "out.events.json").read_text())


def reference_steps(state, world: int, steps) -> list[float]:
    """One process taking the updates a ``world``-rank job takes at steps ``steps``: the global
    batch of step k split into the ranks' rows, each shard's loss drawn from that rank's stream,
    gradients accumulated as Σ_r ∇ℓ_r / W (what DDP's all-reduce average gives), then the same
    clip, Adam and EMA. Returns the per-step mean losses."""
    exp = state.experiment
    seed = int(exp.training.seed)
    batches = make_batches(exp.data, int(exp.training.batch_size), seed)
    losses = []
    for k in steps:
        x = batches.batch(k)
        state.optimizer.zero_grad(set_to_none=False)
        total = 0.0
        for r in range(world):
            g = D.rank_generator(seed, k, STREAM_LOSS, r)
            torch.manual_seed(D.rank_seed(seed, k, STREAM_DROPOUT, r))
            res = state.loss(state.score, D.shard(x, r, world), generator=g)
            (res.total / world).backward()
            total += float(res.total) / world
        torch.nn.utils.clip_grad_norm_(list(state.network.parameters()), max_norm=float(exp.optim.grad_clip))
        for group in state.optimizer.param_groups:
            group["lr"] = T.learning_rate(exp.optim, state.step, int(exp.training.n_iters))
        state.optimizer.step()
        state.step += 1
        state.ema.update(state.network.parameters())
        losses.append(total)
    return losses


def reference_run(terms, world: int, n_steps: int, **kw):
    state = T.build_state(C.experiment_from_wire(wire(terms, **kw)), "cpu")
    if calibrated_terms(state.loss):  # one process measures the shares on the job's global batches
        exp = state.experiment
        batches = make_batches(exp.data, int(exp.training.batch_size), int(exp.training.seed))
        state.network.train()
        state.calibration = calibrate(state.loss, state.score, [batches.batch(j) for j in range(4)],
                                      seed=int(exp.training.seed), start=0)
    return reference_steps(state, world, range(n_steps)), state


def test_two_ranks_equal_one_process_drawing_the_same_samples(tmp_path):
    """dsm, order 2, order 3 and dsm + score FPE, each 5 steps on 2 ranks (one launch)."""
    n = 5
    runs = [{"experiment": wire(LOSSES[name], n_iters=n), "workdir": str(tmp_path / name), "out": str(tmp_path / name / "out")}
            for name in sorted(LOSSES)]
    rc, _out, err = launch(tmp_path, {"runs": runs})
    assert rc == 0, err[-3000:]
    for name in sorted(LOSSES):
        check_equal_to_reference(tmp_path / name, LOSSES[name], n)


def check_equal_to_reference(where, terms, n):
    ev = json.loads((where / "out.events.json").read_text())
    assert ev["status"] == "completed" and ev["step"] == n
    got = {e["step"]: e["loss"] for e in ev["events"] if e["type"] == "metrics"}
    r0 = torch.load(str(where / "out.rank0.pt"))
    r1 = torch.load(str(where / "out.rank1.pt"))
    # every rank holds the same parameters, EMA and Adam moments, bit for bit
    for a, b in zip(r0["params"] + r0["ema"], r1["params"] + r1["ema"]):
        assert torch.equal(a, b)
    for k in r0["adam"]:
        assert torch.equal(r0["adam"][k]["exp_avg"], r1["adam"][k]["exp_avg"])
    ref_losses, ref = reference_run(terms, 2, n)
    assert sorted(got) == list(range(n))
    for k in range(n):
        assert got[k] == pytest.approx(ref_losses[k], rel=1e-5, abs=1e-6), k
    # float tolerance: the all-reduce sums the two halves' gradients in another order than the
    # reference's accumulation, and Adam divides by √v, which magnifies 1-ulp gradient differences
    # of near-zero entries; five steps at lr 1e-3 keep them below 1e-5
    for a, b in zip(r0["params"], ref.network.parameters()):
        assert torch.allclose(a, b.detach(), rtol=1e-4, atol=1e-5)
    for a, b in zip(r0["ema"], ref.ema.shadow_params):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    if calibrated_terms(ref.loss):
        # the α the job trained with, recorded once, is the one process's
        recorded = json.loads((where / CALIBRATION_FILE).read_text())["terms"]
        assert [r["alpha"] for r in recorded] == pytest.approx([r["alpha"] for r in ref.calibration], rel=1e-6)
        assert [e["alpha"] for e in ev["events"] if e["type"] == "calibration"] == [r["alpha"] for r in recorded]
    # the checkpoint rank 0 wrote is the job's state
    from fpdiff import checkpoints as ck
    loaded = ck.load_checkpoint(ck.meta_checkpoint_path(str(where)))
    assert loaded.step == n
    for name, p in zip(ref.network.state_dict(), r0["params"]):
        assert torch.equal(loaded.model[name], p)


def test_batch_not_divisible_by_ranks_is_refused_on_every_rank(tmp_path):
    rc, _out, err = launch(tmp_path, {"experiment": wire([DSM], batch=63)})
    assert rc != 0
    assert "training.batchSize 63 must be divisible by the 2 processes" in err


def test_a_killed_rank_fails_the_job_within_seconds_and_leaves_no_process(tmp_path):
    pid_file = str(tmp_path / "pid")
    t0 = time.monotonic()
    rc, _out, err = launch(tmp_path, {"experiment": wire([DSM], n_iters=100000, meta=100000), "killRank": 1,
                                      "killAtStep": 20, "pidFile": pid_file}, timeout=120)
    elapsed = time.monotonic() - t0
    assert rc != 0
    assert "exitcode  : 7" in err or "exit code 7" in err or "exitcode: 7" in err.replace("  ", " "), err[-2000:]
    pids = [int(open(f"{pid_file}.{r}").read()) for r in (0, 1)]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert elapsed < 60, f"the job took {elapsed:.0f} s to fail"


def test_a_stop_on_rank_0_stops_every_rank_after_the_meta_checkpoint(tmp_path):
    rc, _out, err = launch(tmp_path, {"experiment": wire([DSM], n_iters=1000, meta=1000), "stopAtStep": 3})
    assert rc == 0, err[-3000:]
    ev = read_events(tmp_path)
    assert ev["status"] == "cancelled"
    r1 = torch.load(str(tmp_path / "out.rank1.pt")) if (tmp_path / "out.rank1.pt").exists() else None
    assert r1 is None  # rank 1 saw the same cancellation (it raised TrainingCancelled too)
    from fpdiff import checkpoints as ck
    loaded = ck.load_checkpoint(ck.meta_checkpoint_path(str(tmp_path / "run")))
    # rank 0 asked before step 3; the flag travels with step 3's all-reduce, so step 4 never runs
    assert loaded.step == ev["step"] == 4


def test_resume_moves_between_process_counts(tmp_path):
    """2 ranks for 3 steps, then 1 process resumes to 5, then 2 ranks resume to 7: each stage
    continues the other's model, EMA, Adam state and step exactly."""
    terms = LOSSES["order2"]
    rc, _o, err = launch(tmp_path, {"experiment": wire(terms, n_iters=7, meta=100), "maxSteps": 3})
    assert rc == 0, err[-3000:]
    r0 = torch.load(str(tmp_path / "out.rank0.pt"))
    assert r0["step"] == 3
    exp = C.experiment_from_wire(wire(terms, n_iters=7, meta=100))
    state, res = T.train(exp, str(tmp_path / "run"), resume=True, max_steps=2)
    assert res.step == 5 and res.steps == 2
    rc, _o, err = launch(tmp_path, {"experiment": wire(terms, n_iters=7, meta=100), "resume": True})
    assert rc == 0, err[-3000:]
    ev = read_events(tmp_path)
    assert ev["step"] == 7
    warnings = [e for e in ev["events"] if e["type"] == "warning"]
    assert not warnings, warnings
    r0, r1 = (torch.load(str(tmp_path / f"out.rank{r}.pt")) for r in (0, 1))
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"]))
    # the 2-rank stage continued the 1-process state: the same two updates taken here match it
    ref_losses = reference_steps(state, 2, [5, 6])
    got = {e["step"]: e["loss"] for e in ev["events"] if e["type"] == "metrics"}
    assert sorted(got) == [5, 6]
    assert [got[5], got[6]] == pytest.approx(ref_losses, rel=1e-5)
    for a, b in zip(r0["params"], state.network.parameters()):
        assert torch.allclose(a, b.detach(), rtol=1e-4, atol=1e-5)
    assert int(state.ema.num_updates) == 7

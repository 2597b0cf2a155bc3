"""The training loop (fpdiff.train): checkpoints in the original layout, exact resume, cancel,
the NaN guard, and fine-tuning from an original-format fixture exactly as Score SDE's own
optimisation step and EMA class would do it."""

from __future__ import annotations

import copy
import math
import importlib
import os
import pickle
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fpdiff import checkpoints as ck
import _resolve as resolve
from fpdiff import config as C
from fpdiff import train as T
from fpdiff.data import STREAM_DROPOUT, STREAM_LOSS, make_batches, step_generator, step_seed

TINY_MLP = {"kind": "mlp", "embedDim": 16, "timeHidden": [32], "xHidden": [32], "width": 32, "hidden": [64]}
DSM = {"kind": "dsm", "weighting": "conventional", "reduce": "mean"}


def toy_experiment(terms=None, *, n_iters=6, batch=64, lr=1e-3, warmup=0, clip=1.0, log=1, snap=4, meta=2,
                   deterministic=True, seed=3, dataset="checkerboard", optim=None):
    return resolve.experiment({
        "name": "toy/test",
        "sde": {"kind": "ve"},
        "model": dict(TINY_MLP),
        "data": {"kind": "toy", "dataset": dataset},
        "loss": {"terms": terms or [DSM]},
        "optim": {"kind": "adam", "lr": lr, "warmup": warmup, "gradClip": clip, **(optim or {})},
        "training": {"batchSize": batch, "nIters": n_iters, "logFreq": log, "snapshotFreq": snap,
                     "snapshotFreqForPreemption": meta, "seed": seed, "deterministic": deterministic},
    })


def losses_of(events):
    return {e["step"]: e["loss"] for e in events if e["type"] == "metrics"}


def test_tiny_run_writes_original_layout_checkpoints(tmp_path):
    events = []
    exp = toy_experiment(n_iters=6, snap=4, meta=2)
    state, res = T.train(exp, str(tmp_path), callback=events.append, event_interval=0.0)
    assert res.status == "completed" and res.step == 6 and res.steps == 6
    # k = 2, 4 → meta (steps 3, 5); k = 4 → checkpoint_1 (step 5); end → checkpoint_1 (6 // 4), meta (6)
    kinds = [(c["kind"], os.path.basename(c["path"]), c["step"]) for c in res.checkpoints]
    assert kinds == [("meta", "checkpoint.pth", 3), ("meta", "checkpoint.pth", 5), ("snapshot", "checkpoint_1.pth", 5),
                     ("snapshot", "checkpoint_1.pth", 6), ("meta", "checkpoint.pth", 6)]
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "checkpoints-meta"]
    assert os.listdir(tmp_path / "checkpoints") == ["checkpoint_1.pth"]
    assert os.listdir(tmp_path / "checkpoints-meta") == ["checkpoint.pth"]
    for path in (ck.snapshot_path(str(tmp_path), 1), ck.meta_checkpoint_path(str(tmp_path))):
        loaded = ck.load_checkpoint(path)
        assert loaded.format == "score_sde" and loaded.step == 6 and loaded.extra_keys == []
        assert loaded.sha256 == res.checkpoints[-1]["sha256"]
        assert loaded.ema["num_updates"] == 6 and loaded.ema["decay"] == pytest.approx(0.999)
        steps = {float(s["step"]) for s in loaded.optimizer["state"].values()}
        assert steps == {6.0}
        net = state.network
        for (name, p), key in zip(net.state_dict().items(), loaded.model):
            assert key == name  # load_checkpoint strips the original's 'module.' prefix
            assert torch.equal(loaded.model[name], p.cpu())
        for s, p in zip(loaded.ema["shadow_params"], state.ema.shadow_params):
            assert torch.equal(s, p)
    # the raw file carries the DataParallel prefix, as the original's
    from fpdiff.checkpoints import safe_torch_load
    raw, _ = safe_torch_load(ck.meta_checkpoint_path(str(tmp_path)))
    assert set(raw) == {"optimizer", "model", "ema", "step"} and all(k.startswith("module.") for k in raw["model"])
    # events: metrics every step (logFreq 1), a progress event with the contract's fields
    assert sorted(losses_of(events)) == list(range(6))
    prog = [e for e in events if e["type"] == "progress"]
    assert prog[-1]["step"] == 6 and prog[-1]["total"] == 6 and set(prog[-1]) == {
        "type", "step", "total", "itPerSec", "etaSeconds", "elapsedSeconds"}
    m = res.last_metrics
    assert m["step"] == 5 and set(m) == {"step", "loss", "terms", "gradNorm", "lr"} and set(m["terms"]) == {"dsm"}


def test_warmup_learning_rate_and_ema_decay_follow_the_original(tmp_path):
    exp = toy_experiment(n_iters=3, lr=1e-3, warmup=4, log=1)
    events = []
    state, _ = T.train(exp, str(tmp_path), callback=events.append)
    lrs = [e["lr"] for e in events if e["type"] == "metrics"]
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4])  # lr·min(k/warmup, 1) at update k
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert state.ema.num_updates == 3


def test_cosine_decay_spans_the_updates_from_its_start_to_n_iters(tmp_path):
    """optim.cosineDecayFrom: constant lr up to that update, then lr·½(1 + cos(π·(k − from)/(nIters − from)))."""
    exp = toy_experiment(n_iters=6, lr=1e-3, optim={"cosineDecayFrom": 2})
    events = []
    T.train(exp, str(tmp_path), callback=events.append)
    lrs = [e["lr"] for e in events if e["type"] == "metrics"]
    expected = [1e-3 if k <= 2 else 1e-3 * 0.5 * (1 + math.cos(math.pi * (k - 2) / 4)) for k in range(6)]
    assert lrs == pytest.approx(expected, rel=1e-12) and lrs[-1] < lrs[3] < lrs[2]
    assert T.learning_rate(exp.optim, 9, 6) == 0.0  # past nIters it stays at 0
    # with warm-up both factors apply
    both = toy_experiment(n_iters=4, lr=1e-3, warmup=4, optim={"cosineDecayFrom": 0}).optim
    assert T.learning_rate(both, 2, 4) == pytest.approx(1e-3 * 0.5 * 0.5, rel=1e-12)


def test_resume_from_meta_repeats_the_uninterrupted_losses(tmp_path):
    terms = [DSM, {"kind": "highOrder", "order": 2, "parts": ["frobenius", "trace"], "estimator": "hutchinson"}]
    full_events = []
    exp = toy_experiment(terms, n_iters=8, meta=100, snap=100)
    full, _ = T.train(exp, str(tmp_path / "full"), callback=full_events.append)
    part_events = []
    _, first = T.train(exp, str(tmp_path / "part"), callback=part_events.append, max_steps=3)
    assert first.status == "stopped" and first.step == 3
    assert ck.load_checkpoint(ck.meta_checkpoint_path(str(tmp_path / "part"))).step == 3
    resumed, second = T.train(exp, str(tmp_path / "part"), callback=part_events.append, resume=True)
    assert second.status == "completed" and second.steps == 5
    a, b = losses_of(full_events), losses_of(part_events)
    assert sorted(b) == list(range(8))
    assert [a[k] for k in range(8)] == [b[k] for k in range(8)]  # bitwise equal floats
    for p, q in zip(full.network.parameters(), resumed.network.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(full.ema.shadow_params, resumed.ema.shadow_params):
        assert torch.equal(p, q)


def test_resume_without_meta_warns_and_starts_afresh(tmp_path):
    events = []
    _, res = T.train(toy_experiment(n_iters=1), str(tmp_path), callback=events.append, resume=True)
    assert res.steps == 1
    assert any(e["type"] == "warning" and "no meta checkpoint" in e["message"] for e in events)


def test_cancel_writes_a_meta_checkpoint_then_stops(tmp_path):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 3  # three updates, then the cancel is seen

    events = []
    with pytest.raises(T.TrainingCancelled) as info:
        T.train(toy_experiment(n_iters=50, meta=100, snap=100), str(tmp_path), callback=events.append,
                should_stop=should_stop)
    assert info.value.step == 3
    meta = ck.load_checkpoint(ck.meta_checkpoint_path(str(tmp_path)))
    assert meta.step == 3 and meta.sha256 == info.value.checkpoint["sha256"]
    assert [e for e in events if e["type"] == "checkpoint"][-1]["kind"] == "meta"


def test_huge_learning_rate_stops_with_diverged_and_keeps_the_last_checkpoint(tmp_path):
    # warm-up makes update 0 a no-op and update 1 enormous: the loss of a later update is not finite
    exp = toy_experiment(n_iters=50, lr=1e10, warmup=100000, clip=-1, meta=1, snap=1000)
    events = []
    with pytest.raises(T.Diverged) as info:
        T.train(exp, str(tmp_path), callback=events.append)
    d = info.value
    assert d.step >= 2 and not (np.isfinite(d.values["loss"]) and np.isfinite(d.values["gradNorm"]))
    saved = [e for e in events if e["type"] == "checkpoint"]
    assert d.last_checkpoint["path"] == saved[-1]["path"] and d.last_checkpoint["step"] == d.step
    assert f"diverged at step {d.step}" in str(d) and saved[-1]["path"] in str(d)
    last = ck.load_checkpoint(saved[-1]["path"])
    assert last.sha256 == saved[-1]["sha256"] and last.step == d.step
    assert all(torch.isfinite(t).all() for t in last.model.values())
    assert all(torch.isfinite(t).all() for t in last.ema["shadow_params"])


def test_init_at_or_past_n_iters_is_refused(tmp_path):
    exp = toy_experiment(n_iters=4)
    T.train(exp, str(tmp_path / "a"))
    with pytest.raises(T.TrainingError) as info:
        T.train(exp, str(tmp_path / "b"), init=ck.snapshot_path(str(tmp_path / "a"), 1))
    assert "nIters" in str(info.value) and info.value.field == "experiment.training.nIters"


# ---------------------------------------------------------------------------------------------
# Fine-tuning from an original checkpoint, against Score SDE's own optimize_fn and EMA class

REF = os.environ.get("FPD_REFERENCE_CHECKPOINTS",
                     os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "reference"))
ORIG = os.environ.get("FPD_ORIGINAL_SCORE_SDE", "/work/orig/yang-song+score_sde_pytorch")
FIXTURE = os.path.join(REF, "ve_ncsnpp_small_seed0.pth")


def write_cifar(directory, n_per_batch=4, seed=0):
    """A tiny CIFAR-10 in the real python format (protocol 2, byte keys)."""
    d = directory / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        doc = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n_per_batch).tolist(),
               b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
               b"filenames": [f"{i}.png".encode() for i in range(n_per_batch)]}
        with open(d / name, "wb") as fh:
            pickle.dump(doc, fh, protocol=2)
    return str(directory)


class _RuleOptimize:
    """Score SDE's optimisation step, written out from its documented rules: lr·min(step/warmup, 1),
    then gradient-norm clipping, then Adam's step."""

    def __init__(self, cfg):
        self.lr, self.warmup, self.clip = cfg.optim.lr, cfg.optim.warmup, cfg.optim.grad_clip

    def __call__(self, optimizer, params, step):
        if self.warmup > 0:
            for g in optimizer.param_groups:
                g["lr"] = self.lr * np.minimum(step / self.warmup, 1.0)
        if self.clip >= 0:
            torch.nn.utils.clip_grad_norm_(params, max_norm=self.clip)
        optimizer.step()


class _RuleEMA:
    """Score SDE's EMA, from its documented rule: decay_n = min(decay, (1 + n)/(10 + n)),
    shadow ← shadow − (1 − decay_n)(shadow − θ) over the trainable parameters."""

    def __init__(self, parameters, decay):
        self.decay, self.num_updates = decay, 0
        self.shadow_params = [p.clone().detach() for p in parameters if p.requires_grad]

    def load_state_dict(self, state):
        self.decay, self.num_updates, self.shadow_params = state["decay"], state["num_updates"], state["shadow_params"]

    @torch.no_grad()
    def update(self, parameters):
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow_params, [p for p in parameters if p.requires_grad]):
            s.sub_((1 - decay) * (s - p))


def reference_modules():
    """Score SDE's losses.py (optimization_manager) and models/ema.py imported read-only when its
    checkout is at hand (FPD_ORIGINAL_SCORE_SDE); otherwise the same rules written out above, so
    the test runs on every machine."""
    if not os.path.isfile(os.path.join(ORIG, "losses.py")):
        return (SimpleNamespace(optimization_manager=_RuleOptimize),
                SimpleNamespace(ExponentialMovingAverage=_RuleEMA))
    saved = {k: sys.modules.get(k) for k in ("models", "sde_lib", "losses")}
    for k in list(saved):
        sys.modules.pop(k, None)
    sys.path.insert(0, ORIG)
    try:
        losses = importlib.import_module("losses")
        ema = importlib.import_module("models.ema")
    finally:
        sys.path.remove(ORIG)
        for k in [k for k in sys.modules if k in ("models", "sde_lib", "losses") or k.startswith("models.")]:
            sys.modules.pop(k, None)
        for k, v in saved.items():
            if v is not None:
                sys.modules[k] = v
    return losses, ema


def test_finetune_from_fixture_updates_step_ema_and_adam_as_the_original(tmp_path):
    orig_losses, orig_ema = reference_modules()
    torch.manual_seed(0)
    data_dir = write_cifar(tmp_path / "data")
    exp = resolve.experiment({
        "name": "ft/ve_small",
        "sde": {"kind": "ve"},
        "model": {"kind": "ncsnpp", "nf": 8},
        "data": {"kind": "cifar10", "path": data_dir},
        "loss": {"terms": [{"kind": "dsm", "weighting": "likelihood", "reduce": "sum"}]},
        "optim": {"kind": "adam", "lr": 2e-4, "warmup": 5000, "gradClip": 1},
        "training": {"batchSize": 2, "nIters": 125, "logFreq": 1, "snapshotFreq": 1000,
                     "snapshotFreqForPreemption": 1000, "seed": 7},
    })
    events = []
    ours, res = T.train(exp, str(tmp_path / "run"), init=FIXTURE, callback=events.append)
    assert res.status == "completed" and res.steps == 2 and ours.step == 125
    assert not [e for e in events if e["type"] == "warning"]

    # The reference: the fixture restored into a fresh network, then Score SDE's optimize_fn and
    # ExponentialMovingAverage on the same batches and the same draws.
    fixture = ck.load_checkpoint(FIXTURE)
    assert fixture.step == 123
    ref = T.build_state(exp)
    ref.network.load_state_dict(fixture.model)
    opt = torch.optim.Adam(ref.network.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    opt.load_state_dict(ck.optimizer_state_for_loading(fixture.optimizer))
    ema = orig_ema.ExponentialMovingAverage(ref.network.parameters(), decay=0.999)
    ema.load_state_dict(copy.deepcopy(fixture.ema))
    optimize_fn = orig_losses.optimization_manager(SimpleNamespace(optim=SimpleNamespace(lr=2e-4, warmup=5000, grad_clip=1.0)))
    batches = make_batches(exp.data, 2, 7)
    state = {"step": fixture.step}
    ref_losses = {}
    for _ in range(2):
        k = state["step"]
        x0 = batches.batch(k)
        g = step_generator(7, k, STREAM_LOSS)
        torch.manual_seed(step_seed(7, k, STREAM_DROPOUT))
        ref.network.train()
        opt.zero_grad()
        loss = ref.loss(ref.score, x0, generator=g).total
        loss.backward()
        optimize_fn(opt, ref.network.parameters(), step=state["step"])
        state["step"] += 1
        ema.update(ref.network.parameters())
        ref_losses[k] = float(loss)
    assert losses_of(events) == ref_losses
    for p, q in zip(ours.network.parameters(), ref.network.parameters()):
        assert torch.equal(p, q)
    assert ours.ema.num_updates == ema.num_updates == 125
    for s, r in zip(ours.ema.shadow_params, ema.shadow_params):
        assert torch.equal(s, r)
    # Adam continued from the file's state (its per-parameter step + 2; W, frozen, has no state)
    got = ours.optimizer.state_dict()["state"]
    want = opt.state_dict()["state"]
    before = fixture.optimizer["state"]
    assert set(got) == set(want) == set(before) and len(got) == len(list(ref.network.parameters())) - 1
    for i in want:
        assert float(got[i]["step"]) == float(before[i]["step"]) + 2
        assert torch.equal(got[i]["exp_avg"], want[i]["exp_avg"]) and torch.equal(got[i]["exp_avg_sq"], want[i]["exp_avg_sq"])
    assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 124 / 5000)
    # the final snapshot (checkpoint_<125 // 1000> = checkpoint_0) holds all of it, loadable
    saved = ck.load_checkpoint(ck.snapshot_path(str(tmp_path / "run"), 0))
    assert saved.step == 125 and saved.ema["num_updates"] == 125
    for s, r in zip(saved.ema["shadow_params"], ema.shadow_params):
        assert torch.equal(s, r)


# ---------------------------------------------------------------------------------------------
# Resuming when the meta checkpoint is gone or broken; other histories' snapshots are never lost


def test_resume_without_a_meta_file_continues_from_the_newest_intact_snapshot(tmp_path):
    exp = toy_experiment(n_iters=12, snap=4, meta=100)
    full_events, part_events = [], []
    T.train(exp, str(tmp_path / "full"), callback=full_events.append)
    work = str(tmp_path / "part")
    T.train(exp, work, callback=part_events.append, max_steps=10)  # snapshots at k = 4, 8: steps 5, 9
    os.remove(ck.meta_checkpoint_path(work))
    snap2 = ck.snapshot_path(work, 2)
    with open(snap2, "r+b") as fh:  # the newest snapshot is damaged too
        fh.truncate(100)
    snap1_sha = ck.load_checkpoint(ck.snapshot_path(work, 1)).sha256
    events = []
    state, res = T.train(exp, work, callback=events.append, resume=True)
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("newest intact snapshot" in w and "checkpoint_1.pth" in w and "step 5" in w and "is missing" in w
               and "unreadable" in w for w in warnings), warnings
    assert res.status == "completed" and res.step == 12 and res.steps == 7
    # deterministic mode: the resumed losses are the uninterrupted run's
    a, b = losses_of(full_events), losses_of(events)
    assert all(a[k] == b[k] for k in range(5, 12))
    # the damaged snapshot was kept aside, not overwritten; the one resumed from is untouched
    aside = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(work, "checkpoints")) for f in fs if "superseded" in dp]
    assert [os.path.basename(p) for p in aside] == ["checkpoint_2.pth"] and os.path.getsize(aside[0]) == 100
    assert ck.load_checkpoint(ck.snapshot_path(work, 1)).sha256 == snap1_sha
    assert any("kept in" in w for w in warnings)


def test_resuming_a_finished_run_keeps_its_last_snapshot_where_it_was(tmp_path):
    """A finished run resumed again (e.g. `npm run demo` twice) writes nothing, so nothing is set
    aside: its last snapshot (index nIters // snapshotFreq, step nIters) stays where a fine-tune
    will look for it."""
    exp = toy_experiment(n_iters=8, snap=4, meta=100)  # snapshots at k = 4 (step 5) and the last (step 8)
    T.train(exp, str(tmp_path))
    last = ck.snapshot_path(str(tmp_path), 2)
    sha = ck.load_checkpoint(last).sha256
    events = []
    _state, res = T.train(exp, str(tmp_path), callback=events.append, resume=True)
    assert res.steps == 0 and res.step == 8
    assert not any("kept in" in e["message"] for e in events if e["type"] == "warning"), events
    assert ck.load_checkpoint(last).sha256 == sha
    assert T.snapshot_step(1, 4, 8) == 5 and T.snapshot_step(2, 4, 8) == 8 and T.snapshot_step(2, 4, 10) == 10


def test_a_fresh_start_never_overwrites_another_runs_checkpoints(tmp_path):
    exp = toy_experiment(n_iters=4, snap=2, meta=100)
    T.train(exp, str(tmp_path))
    os.remove(ck.meta_checkpoint_path(str(tmp_path)))
    before = {p: ck.load_checkpoint(p).sha256 for p in T.run_checkpoints(str(tmp_path))}
    with pytest.raises(T.TrainingError, match="holds checkpoints of an earlier run.*never overwrites"):
        T.train(exp, str(tmp_path), resume=False)
    assert {p: ck.load_checkpoint(p).sha256 for p in T.run_checkpoints(str(tmp_path))} == before


def test_a_corrupt_meta_file_with_no_snapshot_is_an_error_not_a_fresh_start(tmp_path):
    exp = toy_experiment(n_iters=2, snap=100, meta=100)
    T.train(exp, str(tmp_path), max_steps=1)
    with open(ck.meta_checkpoint_path(str(tmp_path)), "r+b") as fh:
        fh.truncate(50)
    with pytest.raises(T.TrainingError, match="no checkpoint of this run can be read"):
        T.train(exp, str(tmp_path), resume=True)

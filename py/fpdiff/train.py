"""The training loop (Score SDE ``run_lib.train`` + ``losses.optimization_manager``), as plain
functions and small classes; it never imports the worker.

One step k (k = the number of updates already made, the original's loop index and ``state['step']``):

1. the batch, the loss's draws of (t, z, probes) and the network's dropout come from generators
   seeded by (training.seed, k) — so a run resumed at step k repeats an uninterrupted one;
2. loss.backward(); gradient norm clipped to ``optim.gradClip`` (none if negative);
3. if the loss or the gradient norm is NaN/Inf the update is *not* applied and :class:`Diverged`
   is raised (the parameters, the EMA and every checkpoint on disk stay at their last good state);
4. lr = optim.lr · min(k / warmup, 1) (constant lr when warmup = 0), Adam step, k ← k + 1,
   EMA update with decay min(emaRate, (1 + n)/(10 + n)).

The original's schedule of side effects, on the loop index k: the loss is logged when
k % logFreq == 0; the meta checkpoint ``checkpoints-meta/checkpoint.pth`` is written when
k ≠ 0 and k % snapshotFreqForPreemption == 0; the snapshot ``checkpoints/checkpoint_<k //
snapshotFreq>.pth`` when k ≠ 0 and k % snapshotFreq == 0, and after the last step as
``checkpoint_<nIters // snapshotFreq>.pth``. Files hold the state *after* step k (step k + 1), in
the original format. ``training.nIters`` is the number of
updates of a whole run (the original runs nIters + 1: its loop includes k = nIters); a run started
from a checkpoint continues its step count, as the original's meta-checkpoint resume (and both
papers' fine-tuning) did.

Beyond the original: a run can stop after ``max_steps`` (status "stopped"), be cancelled (both
write the meta checkpoint first), and reports through a throttled ``callback(event)``: metrics
every logFreq steps, progress every ``event_interval`` seconds of wall clock, one event per
checkpoint, warnings.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn as nn

from . import checkpoints as ck
from .data import (STREAM_DROPOUT, STREAM_LOSS, make_batches, step_generator, step_seed)
from .losses import LossExpression, LossResult, build_loss
from .fast_step import step_function
from .losses.calibration import calibrate_run
from .models import EMA, build_network
from .score import NetworkScore, score_model
from .sde import SDE, make_sde

Tensor = torch.Tensor
Callback = Callable[[dict], None]

__all__ = [
    "TrainingError", "Diverged", "TrainingCancelled", "TrainState", "StepResult", "TrainResult",
    "build_state", "build_optimizer", "learning_rate", "init_from_checkpoint", "resume_from_meta",
    "resume_latest", "set_aside_later_snapshots", "run_checkpoints",
    "train_step", "run", "train", "deterministic_mode", "grad_norm",
]


# ---------------------------------------------------------------------------------------------
# Errors


class TrainingError(Exception):
    """A run that cannot start (bad init checkpoint, nothing to do...)."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.field = field


class Diverged(TrainingError):
    """The loss or the gradient norm of step ``step`` is NaN/Inf; nothing was updated or saved."""

    def __init__(self, message: str, step: int, last_checkpoint: Optional[dict], values: dict):
        super().__init__(message)
        self.step = step
        self.last_checkpoint = last_checkpoint
        self.values = values


class TrainingCancelled(TrainingError):
    """Stopped on request after writing the meta checkpoint ``checkpoint``."""

    def __init__(self, message: str, step: int, checkpoint: Optional[dict]):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class TrainState:
    experiment: Any  # fpdiff.config.ExperimentConfig
    network: nn.Module
    sde: SDE
    score: NetworkScore
    loss: LossExpression
    optimizer: torch.optim.Optimizer
    ema: EMA
    step: int
    device: torch.device
    source: Optional[str] = None  # the checkpoint the state was restored from

    def checkpoint_state(self) -> dict:
        """The original checkpoint dict {optimizer, model ('module.' keys), ema, step}."""
        return ck.checkpoint_state(self.network, self.optimizer, self.ema, self.step)


def build_optimizer(network: nn.Module, optim_cfg: Any) -> torch.optim.Adam:
    """Score SDE's ``get_optimizer``: Adam(lr, betas=(beta1, 0.999), eps, weight_decay) over all
    of ``network.parameters()`` (the frozen Fourier W included, as the original)."""
    if getattr(optim_cfg, "kind", "adam") != "adam":
        raise TrainingError(f"optimizer {optim_cfg.kind!r} is not supported", "optim.kind")
    return torch.optim.Adam(network.parameters(), lr=float(optim_cfg.lr), betas=(float(optim_cfg.beta1), 0.999),
                            eps=float(optim_cfg.eps), weight_decay=float(optim_cfg.weight_decay))


def learning_rate(optim_cfg: Any, step: int, n_iters: int) -> float:
    """lr · min(step / warmup, 1) at update ``step`` (0-based; lr when warmup is 0), times
    ½(1 + cos(π·(step − from)/(n_iters − from))) from ``optim.cosineDecayFrom`` on when it is set."""
    lr = float(optim_cfg.lr)
    warmup = int(optim_cfg.warmup)
    if warmup > 0:
        lr *= min(step / warmup, 1.0)
    start = optim_cfg.cosine_decay_from
    if start is not None and step > start:
        frac = min((step - start) / max(1, n_iters - start), 1.0)
        lr *= 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr


def build_state(experiment: Any, device: Any = "cpu") -> TrainState:
    """A fresh network (initialised from training.seed), its SDE, score model, loss, Adam and EMA."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(experiment.training.seed))
        network = build_network(experiment.model, experiment.data)
    network = network.to(device)
    sde = make_sde(experiment.sde)
    return TrainState(
        experiment=experiment,
        network=network,
        sde=sde,
        score=score_model(network, sde, experiment.model),
        loss=build_loss(experiment.loss),
        optimizer=build_optimizer(network, experiment.optim),
        ema=EMA(network.parameters(), decay=float(experiment.model.ema_rate)),
        step=0,
        device=device,
    )


def _saved_dict(kind: str, saved: ck.SavedCheckpoint) -> dict:
    return {"kind": kind, "path": saved.path, "step": int(saved.step or 0), "sha256": saved.sha256, "bytes": int(saved.bytes)}


def _restore(state: TrainState, path: str, *, what: str, warn: Callback) -> ck.Checkpoint:
    """Model, EMA, Adam state and step from an original-format file into ``state``."""
    try:
        loaded = ck.load_checkpoint(path, map_location="cpu")
    except ck.CheckpointError as exc:
        raise TrainingError(f"{what} {path}: {exc}") from None
    except OSError as exc:
        raise TrainingError(f"{what} {path}: {exc.strerror or exc}") from None
    has_ema = loaded.ema is not None
    has_opt = loaded.optimizer is not None
    try:
        info = ck.restore(state.network, loaded, weights="model",
                          optimizer=state.optimizer if has_opt else None,
                          ema=state.ema if has_ema else None)
    except ck.CheckpointError as exc:
        raise TrainingError(f"{what} {path}: {exc}") from None
    for message in info.warnings:
        warn({"type": "warning", "message": f"{path}: {message}"})
    if not has_ema:
        state.ema = EMA(state.network.parameters(), decay=float(state.experiment.model.ema_rate))
        warn({"type": "warning", "message": f"{path} has no EMA weights: the average starts from its weights"})
    if not has_opt:
        warn({"type": "warning", "message": f"{path} has no optimiser state: Adam starts afresh"})
    # The experiment is the truth for the hyper-parameters; say so where the file disagrees.
    cfg = state.experiment
    if has_ema and state.ema.decay != float(cfg.model.ema_rate):
        warn({"type": "warning", "message": f"{path}: its EMA decay {state.ema.decay:g} is replaced by model.emaRate {cfg.model.ema_rate:g}"})
        state.ema.decay = float(cfg.model.ema_rate)
    want = {"betas": (float(cfg.optim.beta1), 0.999), "eps": float(cfg.optim.eps), "weight_decay": float(cfg.optim.weight_decay)}
    for group in state.optimizer.param_groups:
        for key, value in want.items():
            have = tuple(group.get(key)) if key == "betas" else group.get(key)
            if have != value:
                if group is state.optimizer.param_groups[0]:
                    warn({"type": "warning", "message": f"{path}: Adam {key} {have} is replaced by the experiment's {value}"})
                group[key] = value
    state.step = int(loaded.step or 0)
    if loaded.step is None:
        kind = "is a plain state dict" if loaded.format != "score_sde" else "records no step"
        warn({"type": "warning", "message": f"{path} {kind}: training starts at step 0"})
    state.source = os.path.abspath(path)
    return loaded


def init_from_checkpoint(state: TrainState, path: str, *, warn: Callback = lambda e: None) -> int:
    """Fine-tuning start: the model, EMA, Adam state and step of an original checkpoint (as both
    papers did by placing it where Score SDE resumes from). Returns the step."""
    _restore(state, path, what="init checkpoint", warn=warn)
    return state.step


def resume_from_meta(state: TrainState, workdir: str, *, warn: Callback = lambda e: None) -> Optional[str]:
    """Restore ``<workdir>/checkpoints-meta/checkpoint.pth`` if it exists; returns its path."""
    path = ck.meta_checkpoint_path(workdir)
    if not os.path.isfile(path):
        return None
    _restore(state, path, what="meta checkpoint", warn=warn)
    return path


def _snapshots(workdir: str) -> list[tuple[int, str]]:
    """``(k, path)`` of ``checkpoints/checkpoint_<k>.pth``, newest (largest k) first."""
    d = os.path.join(workdir, "checkpoints")
    found = []
    for name in os.listdir(d) if os.path.isdir(d) else []:
        stem, ext = os.path.splitext(name)
        if ext == ".pth" and stem.startswith("checkpoint_") and stem[len("checkpoint_"):].isdigit():
            found.append((int(stem[len("checkpoint_"):]), os.path.join(d, name)))
    return sorted(found, reverse=True)


def _unreadable(path: str) -> Optional[str]:
    """Why the file cannot be loaded at all (missing, truncated, not a checkpoint), else None."""
    try:
        ck.load_checkpoint(path, map_location="cpu")
    except (ck.CheckpointError, OSError) as exc:
        return str(exc)
    return None


def run_checkpoints(workdir: str) -> list[str]:
    """Every checkpoint a run left in ``workdir`` (meta file and snapshots)."""
    meta = ck.meta_checkpoint_path(workdir)
    return ([meta] if os.path.isfile(meta) else []) + [p for _, p in _snapshots(workdir)]


def resume_latest(state: TrainState, workdir: str, *, warn: Callback = lambda e: None) -> Optional[str]:
    """Restore the newest intact checkpoint of ``workdir``: the meta file, else — when it is
    missing or unreadable — the newest snapshot that loads (a warning says which). Returns its
    path, or None when the directory holds no checkpoint. A file that loads but does not fit the
    experiment is an error, not a reason to go further back."""
    meta = ck.meta_checkpoint_path(workdir)
    candidates = ([(meta, "meta checkpoint")] if os.path.isfile(meta) else []) + [(p, "snapshot") for _, p in _snapshots(workdir)]
    missing = [] if os.path.isfile(meta) else [f"{meta} is missing"]
    skipped: list[str] = []
    for path, what in candidates:
        try:
            _restore(state, path, what=what, warn=warn)
        except TrainingError:
            why = _unreadable(path)
            if why is None:
                raise  # readable but unfit (another network, a bad step…): going back would hide it
            skipped.append(f"{path} is unreadable ({why})")
            continue
        if what != "meta checkpoint":
            warn({"type": "warning", "message": f"resuming from the newest intact snapshot {path} (step {state.step}): "
                                                + "; ".join(missing + skipped)})
        return path
    if skipped:
        raise TrainingError(f"{workdir}: no checkpoint of this run can be read: " + "; ".join(skipped))
    return None


def set_aside_later_snapshots(workdir: str, step: int, snapshot_freq: int, *, warn: Callback = lambda e: None) -> list[str]:
    """Move snapshots a run resumed at ``step`` would write again (index k with k·snapshotFreq ≥
    step: states past the resume point, of another history or unreadable) into
    ``checkpoints/superseded-<time>/`` rather than overwrite them; returns their new paths."""
    later = [p for k, p in _snapshots(workdir) if k * snapshot_freq >= step]
    if not later:
        return []
    dest = os.path.join(workdir, "checkpoints", time.strftime("superseded-%Y%m%dT%H%M%S", time.gmtime()))
    os.makedirs(dest, exist_ok=True)
    moved = []
    for p in later:
        target = os.path.join(dest, os.path.basename(p))
        os.replace(p, target)
        moved.append(target)
    warn({"type": "warning", "message": f"snapshots past the resume point (step {step}) were kept in {dest} "
                                        f"instead of being overwritten: {', '.join(os.path.basename(p) for p in moved)}"})
    return moved


# ---------------------------------------------------------------------------------------------
# One step


@torch.no_grad()
def grad_norm(parameters: Any) -> Tensor:
    """The 2-norm of all gradients together (what clip_grad_norm_ measures)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


@dataclass
class StepResult:
    result: LossResult
    grad_norm: Tensor
    lr: float
    ok: bool

    def metrics(self, step: int) -> dict:
        terms = {k: float(v.detach()) for k, v in self.result.terms.items()}
        return {"step": int(step), "loss": float(self.result.total.detach()), "terms": terms,
                "gradNorm": float(self.grad_norm), "lr": float(self.lr)}


def train_step(state: TrainState, x0: Tensor, generator: Optional[torch.Generator] = None) -> StepResult:
    """One update of Score SDE's ``step_fn`` + ``optimize_fn``; not applied if non-finite."""
    cfg = state.experiment.optim
    net = state.network
    net.train()
    opt = state.optimizer
    opt.zero_grad(set_to_none=False)  # the original's zero_grad() of torch 1.x
    res = state.loss(state.score, x0, generator=generator)
    res.total.backward()
    params = list(net.parameters())
    clip = float(cfg.grad_clip)
    if clip >= 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=clip)
    else:
        norm = grad_norm(params)
    ok = bool(torch.isfinite(res.total.detach()) & torch.isfinite(norm))  # one sync per step
    lr = learning_rate(cfg, state.step, int(state.experiment.training.n_iters))
    if ok:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        state.step += 1
        state.ema.update(net.parameters())
    return StepResult(res, norm.detach(), lr, ok)


# ---------------------------------------------------------------------------------------------
# The loop


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` (warn-only where an op has no deterministic kernel)
    and cuDNN's deterministic flags for the duration; restores the previous settings."""
    if not enabled:
        yield
        return
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic = prev[2]
        torch.backends.cudnn.benchmark = prev[3]


@dataclass
class TrainResult:
    status: str  # "completed" | "stopped"
    step: int  # updates made in total (the state's step)
    steps: int  # updates made by this call
    seconds: float
    last_metrics: Optional[dict]
    checkpoints: list[dict] = field(default_factory=list)

    def to_wire(self) -> dict:
        return {"status": self.status, "step": self.step, "steps": self.steps, "seconds": self.seconds,
                "lastMetrics": self.last_metrics, "checkpoints": self.checkpoints}


class _Progress:
    """Wall-clock throttled progress events; the rate excludes the first (warm-up) step."""

    def __init__(self, emit: Callback, start: int, end: int, interval: float):
        self.emit = emit
        self.start = start
        self.end = end
        self.interval = max(0.0, float(interval))
        self.t0 = time.perf_counter()
        self.t_first: Optional[float] = None
        self.step_first = start
        self.last = -math.inf
        self.last_step = -1

    def rate(self, step: int, now: float) -> float:
        if self.t_first is not None and step > self.step_first and now > self.t_first:
            return (step - self.step_first) / (now - self.t_first)
        done = step - self.start
        return done / (now - self.t0) if done > 0 and now > self.t0 else 0.0

    def event(self, step: int, now: float) -> dict:
        r = self.rate(step, now)
        eta = (self.end - step) / r if r > 0 else None
        return {"type": "progress", "step": int(step), "total": int(self.end), "itPerSec": r,
                "etaSeconds": eta, "elapsedSeconds": now - self.t0}

    def tick(self, step: int, force: bool = False) -> None:
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first, self.step_first = now, step
            force = True  # the first step is announced at once
        if step != self.last_step and (force or now - self.last >= self.interval):
            self.last, self.last_step = now, step
            self.emit(self.event(step, now))


def run(state: TrainState, workdir: str, batches: Any, *, max_steps: Optional[int] = None,
        callback: Optional[Callback] = None, event_interval: float = 1.0,
        should_stop: Optional[Callable[[], bool]] = None,
        last_checkpoint: Optional[dict] = None) -> TrainResult:
    """Train from ``state.step`` to training.nIters (or ``max_steps`` more), writing checkpoints
    under ``workdir`` in the original layout. Raises :class:`Diverged` or
    :class:`TrainingCancelled` (after writing the meta checkpoint)."""
    exp = state.experiment
    tc = exp.training
    emit: Callback = callback or (lambda e: None)
    n_iters = int(tc.n_iters)
    start = int(state.step)
    end = n_iters if max_steps is None else min(n_iters, start + int(max_steps))
    seed = int(tc.seed)
    log_freq, snap_freq, meta_freq = int(tc.log_freq), int(tc.snapshot_freq), int(tc.snapshot_freq_for_preemption)
    device = state.device
    saved: list[dict] = []
    last_good = last_checkpoint
    last_metrics: Optional[dict] = None
    meta_step = -1
    t0 = time.perf_counter()
    progress = _Progress(emit, start, end, event_interval)

    def save(kind: str, k_snap: Optional[int] = None) -> dict:
        nonlocal last_good, meta_step
        state_dict = state.checkpoint_state()
        if kind == "meta":
            out = ck.save_run_checkpoint(workdir, state_dict, meta=True)
            meta_step = state.step
        else:
            out = ck.save_run_checkpoint(workdir, state_dict, k=k_snap)
        info = _saved_dict(kind, out)
        saved.append(info)
        last_good = info
        emit({"type": "checkpoint", **info})
        return info

    loss_gen = torch.Generator(device=device)
    step_fn = step_function(state, tc.cuda_graph, emit)  # plain, or CUDA-graph captured
    res: Optional[StepResult] = None
    k = start
    with deterministic_mode(bool(tc.deterministic)):
        for k in range(start, end):
            if should_stop is not None and should_stop():
                info = save("meta")
                progress.tick(state.step, force=True)
                raise TrainingCancelled(f"cancelled at step {state.step}; the meta checkpoint {info['path']} resumes it", state.step, info)
            x0 = batches.batch(k, device=device)
            step_generator(seed, k, STREAM_LOSS, generator=loss_gen)
            torch.manual_seed(step_seed(seed, k, STREAM_DROPOUT))  # dropout draws from the global RNG
            res = step_fn(state, x0, loss_gen)
            if not res.ok:
                values = res.metrics(k)
                where = (f"the last good checkpoint is {last_good['path']} (step {last_good['step']})" if last_good
                         else "no checkpoint of this run was written before it")
                msg = (f"training diverged at step {k}: loss {values['loss']}, gradient norm {values['gradNorm']} "
                       f"(lr {values['lr']:g}); the update was not applied and nothing was saved after it; {where}")
                raise Diverged(msg, k, last_good, values)
            if k % log_freq == 0:
                last_metrics = res.metrics(k)
                emit({"type": "metrics", **last_metrics})
            if k != 0 and k % meta_freq == 0:
                save("meta")
            snaps = []
            if k != 0 and k % snap_freq == 0:
                snaps.append(k // snap_freq)
            if k == n_iters - 1 and n_iters // snap_freq not in snaps:
                snaps.append(n_iters // snap_freq)  # the last state, under the index the original gives it
            for index in snaps:
                save("snapshot", index)
            progress.tick(state.step)
    steps = state.step - start
    if res is not None and (last_metrics is None or last_metrics["step"] != k):
        last_metrics = res.metrics(k)
    if steps > 0 and meta_step != state.step:
        save("meta")  # where a later call resumes from
    if steps > 0:
        progress.tick(state.step, force=True)
    status = "completed" if state.step >= n_iters else "stopped"
    return TrainResult(status, state.step, steps, time.perf_counter() - t0, last_metrics, saved)


def train(experiment: Any, workdir: str, *, device: Any = "cpu", resume: bool = False,
          init: Optional[str] = None, max_steps: Optional[int] = None, callback: Optional[Callback] = None,
          event_interval: float = 1.0, should_stop: Optional[Callable[[], bool]] = None,
          batches: Any = None, on_state: Optional[Callable[[TrainState], None]] = None,
          ) -> tuple[TrainState, TrainResult]:
    """Build, start (resume from the meta checkpoint / init from a checkpoint / fresh) and run.

    ``on_state(state)`` receives the state once it is built (so a caller still holds it when the
    run ends by an exception, e.g. to keep a cancelled model)."""
    emit: Callback = callback or (lambda e: None)
    state = build_state(experiment, device)
    if on_state is not None:
        on_state(state)
    start_from: Optional[dict] = None
    resumed = resume_latest(state, workdir, warn=emit) if resume else None
    if resumed is not None:
        kind = "meta" if resumed == ck.meta_checkpoint_path(workdir) else "snapshot"
        start_from = {"kind": kind, "path": resumed, "step": state.step}
        set_aside_later_snapshots(workdir, state.step, int(experiment.training.snapshot_freq), warn=emit)
        if init:
            emit({"type": "warning", "message": f"resuming from {resumed} (step {state.step}); init {init} is not used"})
    else:
        earlier = run_checkpoints(workdir)
        if earlier:
            raise TrainingError(
                f"{workdir} holds checkpoints of an earlier run ({', '.join(os.path.relpath(p, workdir) for p in earlier[:4])}"
                f"{', …' if len(earlier) > 4 else ''}); fpdiff never overwrites them: resume that run, or choose another workdir")
        if resume:
            emit({"type": "warning", "message": f"no meta checkpoint in {workdir}: starting {'from ' + init if init else 'afresh'}"})
        if init:
            init_from_checkpoint(state, init, warn=emit)
            start_from = {"kind": "init", "path": os.path.abspath(init), "step": state.step}
            if state.step >= int(experiment.training.n_iters):
                raise TrainingError(
                    f"{init} is at step {state.step} and training.nIters is {experiment.training.n_iters}: fine-tuning "
                    f"continues the checkpoint's step count (as the originals), so set nIters to {state.step} + the "
                    "number of steps to train", "experiment.training.nIters")
    if batches is None:
        batches = make_batches(experiment.data, int(experiment.training.batch_size), int(experiment.training.seed))
    calibrate_run(state, workdir, batches, resumed=resumed is not None, emit=emit)  # score-FPE shares → α, β
    result = run(state, workdir, batches, max_steps=max_steps, callback=emit, event_interval=event_interval,
                 should_stop=should_stop, last_checkpoint=start_from)
    return state, result

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
from . import distributed as D
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
    "resume_latest", "set_aside_later_snapshots", "snapshot_step", "run_checkpoints",
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
    dist: Optional[D.Dist] = None  # the job this rank belongs to (None: one process)
    ddp: Optional[nn.Module] = None  # DistributedDataParallel around ``network`` (what ``score`` calls)

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


def build_state(experiment: Any, device: Any = "cpu", dist: Optional[D.Dist] = None) -> TrainState:
    """A fresh network (initialised from training.seed), its SDE, score model, loss, Adam and EMA.

    With ``dist`` every rank builds the same network from the same seed, and the score model
    calls it through DistributedDataParallel (gradients averaged over ranks in backward)."""
    device = torch.device(device)
    if dist is not None:
        device = dist.device(device)
        world, batch = dist.world, int(experiment.training.batch_size)
        if batch % world:
            raise TrainingError(f"training.batchSize {batch} must be divisible by the {world} processes "
                                "(each takes an equal share of the global batch)", "experiment.training.batchSize")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(experiment.training.seed))
        network = build_network(experiment.model, experiment.data)
    network = network.to(device)
    sde = make_sde(experiment.sde)
    ddp = D.wrap_ddp(network, dist, device) if dist is not None else None
    return TrainState(
        experiment=experiment,
        network=network,
        sde=sde,
        score=score_model(ddp if ddp is not None else network, sde, experiment.model),
        loss=build_loss(experiment.loss),
        optimizer=build_optimizer(network, experiment.optim),
        ema=EMA(network.parameters(), decay=float(experiment.model.ema_rate)),
        step=0,
        device=device,
        dist=dist,
        ddp=ddp,
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


def snapshot_step(index: int, snapshot_freq: int, n_iters: int) -> int:
    """The step snapshot ``index`` holds in a run of ``n_iters``: the state after update
    index·snapshotFreq (loop index k = index·snapshotFreq, the original's schedule), except the
    last index, nIters // snapshotFreq, which holds the final state."""
    return n_iters if index == n_iters // snapshot_freq else index * snapshot_freq + 1


def set_aside_later_snapshots(workdir: str, step: int, snapshot_freq: int, n_iters: int, *,
                              warn: Callback = lambda e: None) -> list[str]:
    """Move the snapshots past the resume point ``step`` (which the resumed run would write again,
    or of another history) into ``checkpoints/superseded-<time>/`` rather than overwrite them;
    returns their new paths. A finished run resumed at nIters keeps its last snapshot."""
    later = [p for k, p in _snapshots(workdir) if snapshot_step(k, snapshot_freq, n_iters) > step]
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
    # Over ranks: the mean loss and terms of the global batch, and whether any rank asked to stop.
    reduced: Optional[dict] = None
    stop: bool = False

    def metrics(self, step: int) -> dict:
        if self.reduced is not None:
            loss, terms = self.reduced["loss"], dict(self.reduced["terms"])
        else:
            loss = float(self.result.total.detach())
            terms = {k: float(v.detach()) for k, v in self.result.terms.items()}
        return {"step": int(step), "loss": loss, "terms": terms,
                "gradNorm": float(self.grad_norm), "lr": float(self.lr)}


def _reduce_step(state: TrainState, res: LossResult, stop: bool) -> tuple[dict, bool, Tensor]:
    """One all-reduce per step: Σ over ranks of (loss, terms…, stop flag) → the global batch's
    mean loss and terms (every rank's shard has B/W rows, so the mean of means is the mean) and
    whether any rank wants to stop. A NaN on any rank makes the sum NaN on all of them."""
    d = state.dist
    assert d is not None
    names = list(res.terms)
    vec = torch.stack([res.total.detach().reshape(()).to(torch.float64)]
                      + [res.terms[n].detach().reshape(()).to(torch.float64) for n in names]
                      + [torch.tensor(1.0 if stop else 0.0, dtype=torch.float64, device=res.total.device)])
    vec = d.all_sum(vec) / d.world
    values = vec.tolist()
    reduced = {"loss": values[0], "terms": {n: values[1 + i] for i, n in enumerate(names)}}
    return reduced, values[-1] > 0, vec[0]


def train_step(state: TrainState, x0: Tensor, generator: Optional[torch.Generator] = None, *,
               stop: bool = False) -> StepResult:
    """One update of Score SDE's ``step_fn`` + ``optimize_fn``; not applied if non-finite.

    Distributed: ``x0`` is this rank's shard; the loss's derivative terms differentiate in x
    (``autograd.grad`` / forward mode) and the one ``backward`` averages the parameter
    gradients over ranks (DDP), so clipping, Adam and the EMA see the same gradient everywhere;
    ``stop`` is this rank's request to stop, OR-ed over ranks into ``StepResult.stop``."""
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
    reduced, stop_all, total = None, False, res.total.detach()
    if state.dist is not None:
        reduced, stop_all, total = _reduce_step(state, res, stop)
    ok = bool(torch.isfinite(total) & torch.isfinite(norm))  # one sync per step
    lr = learning_rate(cfg, state.step, int(state.experiment.training.n_iters))
    if ok:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        state.step += 1
        state.ema.update(net.parameters())
    return StepResult(res, norm.detach(), lr, ok, reduced, stop_all)


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


def local_batch(state: TrainState, batches: Any, k: int) -> Tensor:
    """This rank's rows of global batch k (the whole batch in one process)."""
    d = state.dist
    if d is None:
        return batches.batch(k, device=state.device)
    return D.shard(batches.batch(k, device=None), d.rank, d.world).to(state.device)


def seed_step(state: TrainState, k: int, loss_gen: torch.Generator) -> None:
    """Seed step k's loss draws (t, z, probes) into ``loss_gen`` and the network's dropout (the
    global RNG): from (seed, k) in one process, from (seed, k, rank) on each rank of a job."""
    seed, d = int(state.experiment.training.seed), state.dist
    if d is None:
        step_generator(seed, k, STREAM_LOSS, generator=loss_gen)
        torch.manual_seed(step_seed(seed, k, STREAM_DROPOUT))  # dropout draws from the global RNG
    else:
        D.rank_generator(seed, k, STREAM_LOSS, d.rank, generator=loss_gen)
        torch.manual_seed(D.rank_seed(seed, k, STREAM_DROPOUT, d.rank))


def run(state: TrainState, workdir: str, batches: Any, *, max_steps: Optional[int] = None,
        callback: Optional[Callback] = None, event_interval: float = 1.0,
        should_stop: Optional[Callable[[], bool]] = None,
        last_checkpoint: Optional[dict] = None, hooks: Any = None) -> TrainResult:
    """Train from ``state.step`` to training.nIters (or ``max_steps`` more), writing checkpoints
    under ``workdir`` in the original layout. Raises :class:`Diverged` or
    :class:`TrainingCancelled` (after writing the meta checkpoint).

    ``hooks.after_step(state, k, snapshot=…)`` (``fpdiff.evaluation.TrainingEvaluator``) runs
    the evaluation of the original's loop after update k: held-out losses every evalFreq, samples
    and bits/dim at each snapshot. In a job, every rank runs the loop; rank 0 alone writes files
    and emits events, and a stop request reaches all ranks through the step's all-reduce."""
    exp = state.experiment
    tc = exp.training
    emit: Callback = callback or (lambda e: None)
    n_iters = int(tc.n_iters)
    start = int(state.step)
    end = n_iters if max_steps is None else min(n_iters, start + int(max_steps))
    log_freq, snap_freq, meta_freq = int(tc.log_freq), int(tc.snapshot_freq), int(tc.snapshot_freq_for_preemption)
    device = state.device
    saved: list[dict] = []
    last_good = last_checkpoint
    last_metrics: Optional[dict] = None
    meta_step = -1
    t0 = time.perf_counter()
    progress = _Progress(emit, start, end, event_interval)

    def save(kind: str, k_snap: Optional[int] = None) -> Optional[dict]:
        nonlocal last_good, meta_step
        if state.dist is not None and not state.dist.is_main:
            meta_step = state.step if kind == "meta" else meta_step
            return None  # rank 0 writes the job's checkpoints
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
    if tc.cuda_graph and state.dist is not None:
        emit({"type": "warning", "message": "training.cudaGraph: not in a job of several processes (the step's "
                                            "all-reduce is not captured); the plain step runs"})
        step_fn = train_step
    else:
        step_fn = step_function(state, tc.cuda_graph, emit)  # plain, or CUDA-graph captured
    res: Optional[StepResult] = None
    k = start
    d = state.dist
    stop_all = False  # distributed: a stop agreed on by the previous step's all-reduce
    with deterministic_mode(bool(tc.deterministic)):
        for k in range(start, end):
            if stop_all if d is not None else (should_stop is not None and should_stop()):
                info = save("meta")
                progress.tick(state.step, force=True)
                where = f"; the meta checkpoint {info['path']} resumes it" if info else ""
                raise TrainingCancelled(f"cancelled at step {state.step}{where}", state.step, info)
            x0 = local_batch(state, batches, k)
            seed_step(state, k, loss_gen)
            if d is None:
                res = step_fn(state, x0, loss_gen)
            else:
                res = step_fn(state, x0, loss_gen, stop=should_stop is not None and should_stop())
                stop_all = res.stop
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
            if hooks is not None:
                hooks.after_step(state, k, snapshot=bool(snaps), final=(k == n_iters - 1))
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


def _start(state: TrainState, experiment: Any, workdir: str, *, resume: bool, init: Optional[str],
           emit: Callback) -> Optional[dict]:
    """Resume from the meta checkpoint / init from a checkpoint / start afresh; returns where from."""
    start_from: Optional[dict] = None
    resumed = resume_latest(state, workdir, warn=emit) if resume else None
    if resumed is not None:
        kind = "meta" if resumed == ck.meta_checkpoint_path(workdir) else "snapshot"
        start_from = {"kind": kind, "path": resumed, "step": state.step}
        set_aside_later_snapshots(workdir, state.step, int(experiment.training.snapshot_freq),
                                  int(experiment.training.n_iters), warn=emit)
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
    return start_from


def _start_distributed(state: TrainState, experiment: Any, workdir: str, *, resume: bool, init: Optional[str],
                       emit: Callback) -> Optional[dict]:
    """Rank 0 reads the checkpoint (the run directory need only exist on its machine) and every
    rank receives its model, EMA, Adam state and step — so a run saved by any number of ranks
    resumes on any other number. An error on rank 0 is raised on every rank."""
    d = state.dist
    assert d is not None
    outcome: dict = {}
    if d.is_main:
        try:
            outcome = {"start_from": _start(state, experiment, workdir, resume=resume, init=init, emit=emit),
                       "step": state.step, "source": state.source, "ema_decay": state.ema.decay}
        except TrainingError as exc:
            outcome = {"error": exc.message, "field": exc.field}
    outcome = d.broadcast_object(outcome)
    if "error" in outcome:
        raise TrainingError(outcome["error"], outcome["field"])
    D.broadcast_module_state(list(state.network.parameters()) + list(state.network.buffers()), d)
    D.broadcast_module_state(state.ema.shadow_params, d)
    D.broadcast_optimizer_state(state.optimizer, d)
    state.step, state.source, state.ema.decay = int(outcome["step"]), outcome["source"], float(outcome["ema_decay"])
    state.ema.num_updates = d.broadcast_object(state.ema.num_updates if d.is_main else None)
    return outcome["start_from"]


def train(experiment: Any, workdir: str, *, device: Any = "cpu", resume: bool = False,
          init: Optional[str] = None, max_steps: Optional[int] = None, callback: Optional[Callback] = None,
          event_interval: float = 1.0, should_stop: Optional[Callable[[], bool]] = None,
          batches: Any = None, on_state: Optional[Callable[[TrainState], None]] = None,
          dist: Optional[D.Dist] = None, hooks: Any = None,
          ) -> tuple[TrainState, TrainResult]:
    """Build, start (resume from the meta checkpoint / init from a checkpoint / fresh) and run.

    ``on_state(state)`` receives the state once it is built (so a caller still holds it when the
    run ends by an exception, e.g. to keep a cancelled model). ``dist``: this rank's place in a
    torchrun job (every rank calls ``train`` with the same arguments; only rank 0's ``callback``
    is called). ``hooks``: evaluation during training (``fpdiff.evaluation.TrainingEvaluator``)."""
    emit: Callback = callback or (lambda e: None)
    if dist is not None and not dist.is_main:
        emit = lambda e: None  # noqa: E731  (events are rank 0's to report)
    state = build_state(experiment, device, dist)
    if on_state is not None:
        on_state(state)
    if dist is None:
        start_from = _start(state, experiment, workdir, resume=resume, init=init, emit=emit)
    else:
        start_from = _start_distributed(state, experiment, workdir, resume=resume, init=init, emit=emit)
    if batches is None:
        batches = D.all_or_none(dist, lambda: make_batches(experiment.data, int(experiment.training.batch_size),
                                                           int(experiment.training.seed)))
    # score-FPE shares → α, β: every rank measures the same model on the same batches and draws
    # (no broadcast needed); rank 0 records them
    resumed = start_from is not None and start_from["kind"] in ("meta", "snapshot")
    calibrate_run(state, workdir, batches, resumed=resumed, record=dist is None or dist.is_main, emit=emit)

    def run_emit(e: dict) -> None:
        if hooks is not None:
            hooks.on_event(e)  # TensorBoard sees the training scalars
        emit(e)

    if hooks is not None:
        hooks.bind(state, workdir, emit)
    try:
        result = run(state, workdir, batches, max_steps=max_steps, callback=run_emit, event_interval=event_interval,
                     should_stop=should_stop, last_checkpoint=start_from, hooks=hooks)
    finally:
        if hooks is not None:
            hooks.close()
    return state, result

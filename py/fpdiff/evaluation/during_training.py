"""Evaluation inside the training loop, on Score SDE's schedule (``run_lib.train``):

- after update k with k % training.evalFreq == 0: every loss term of the EMA model on a held-out
  batch (batch k of the test split for images, a fresh toy sample from its own stream for toys),
  reported as ``eval`` events and ``eval_loss`` / ``eval/<term>`` scalars;
- at each snapshot (the steps that write ``checkpoints/checkpoint_<i>.pth``), when
  training.snapshotSampling: a batch of samples of the EMA model by the experiment's sampler,
  saved as ``samples/iter_<k>/sample.npz`` (uint8 NHWC for images) and ``sample.png`` (the grid;
  a scatter for toys), and as a TensorBoard image;
- at each snapshot, when training.snapshotBpd = n > 0: bits/dim (nats for toys) of the EMA model
  on the first n test points, with the same dequantisation noise and probes every time, so
  successive snapshots are compared on identical draws.

In a job every rank evaluates its share of each batch (a plain split; the EMA copy is not wrapped
in DDP) and rank 0 combines, writes and reports. Training scalars (``training_loss``, terms, lr,
gradient norm) go to TensorBoard from the metrics events.
"""

from __future__ import annotations

import copy
import math
import os
import time
from typing import Any, Callable, Optional

import numpy as np
import torch

from .. import config as C
from .. import distributed as D
from ..data import DataError, ToyBatches, inverse_scaler, load_images, make_batches, step_generator, step_seed
from ..score import score_model
from . import images as I
from .sampler import draw, sample_shape, sampler_spec
from .tensorboard import Board

Tensor = torch.Tensor
Callback = Callable[[dict], None]

# Random streams of evaluation (distinct from the training streams 0–3 of fpdiff.data).
STREAM_EVAL = 11
STREAM_SNAPSHOT = 12
STREAM_SNAPSHOT_BPD = 13
FIXED_STEPS = 100  # rk4 / euler steps over [eps, 1] (the ops' default)


def _gen(seed: int, k: int, stream: int, d: Optional[D.Dist], device: Any = "cpu") -> torch.Generator:
    if d is None:
        return step_generator(seed, k, stream, device=device)
    return D.rank_generator(seed, k, stream, d.rank, device=device)


class TrainingEvaluator:
    """The ``hooks`` of :func:`fpdiff.train.run`: call :meth:`bind` once, then the loop calls
    :meth:`after_step`; :meth:`on_event` sees the loop's events (for TensorBoard)."""

    def __init__(self, experiment: Any):
        self.experiment = experiment
        tc = experiment.training
        self.eval_freq = int(tc.eval_freq)
        self.snapshot_sampling = bool(tc.snapshot_sampling)
        self.snapshot_bpd = int(tc.snapshot_bpd)
        self.snapshot_samples = int(tc.snapshot_samples or tc.batch_size)  # absent: the batch size, as Score SDE
        self.tensorboard = bool(tc.tensorboard)
        self.state: Any = None
        self.workdir = ""
        self.emit: Callback = lambda e: None
        self.board = Board(None, enabled=False)
        self._held_out: Any = None
        self._held_out_error: Optional[str] = None
        self._ema_net: Optional[torch.nn.Module] = None
        self._ema_step = -1
        self._bpd_points: Optional[Tensor] = None

    # -- wiring --------------------------------------------------------------------------------

    @property
    def dist(self) -> Optional[D.Dist]:
        return self.state.dist if self.state is not None else None

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    def bind(self, state: Any, workdir: str, emit: Callback) -> None:
        self.state, self.workdir, self.emit = state, workdir, emit
        if self.is_main and self.tensorboard:
            self.board = Board(os.path.join(workdir, "tensorboard"))
            if self.board.error:
                emit({"type": "warning", "message": self.board.error})

    def on_event(self, e: dict) -> None:
        if e.get("type") == "metrics":
            self.board.scalars(e["step"], {"training_loss": e["loss"], "lr": e["lr"], "grad_norm": e["gradNorm"]})
            self.board.scalars(e["step"], e["terms"], prefix="train/")

    def close(self) -> None:
        self.board.close()

    # -- the EMA model -------------------------------------------------------------------------

    def _ema_score(self):
        state = self.state
        if self._ema_net is None:
            self._ema_net = copy.deepcopy(state.network)
        if self._ema_step != state.step:
            state.ema.copy_to(self._ema_net.parameters())
            self._ema_step = state.step
        self._ema_net.eval()
        return score_model(self._ema_net, state.sde, self.experiment.model)

    # -- the schedule --------------------------------------------------------------------------

    def after_step(self, state: Any, k: int, *, snapshot: bool, final: bool) -> None:
        evaluated = k % self.eval_freq == 0
        if evaluated:
            self.eval_losses(k)
        if snapshot:
            # the original's sample directory is named by its loop index; the last snapshot of a
            # run is the original's step nIters (this loop's k = nIters − 1, see fpdiff.train)
            label = int(self.experiment.training.n_iters) if final else k
            if self.snapshot_sampling:
                self.snapshot_samples_at(label)
            if self.snapshot_bpd > 0:
                self.snapshot_likelihood(label)
        if evaluated or snapshot:  # the metrics between reach the file within the writer's flush_secs
            self.board.flush()

    # -- held-out losses -----------------------------------------------------------------------

    def _held_out_batch(self, k: int) -> Optional[Tensor]:
        exp = self.experiment
        seed, batch = int(exp.training.seed), int(exp.training.batch_size)
        if self._held_out is None and self._held_out_error is None:
            if isinstance(exp.data, C.ToyDataConfig):
                self._held_out = ToyBatches(exp.data, batch, step_seed(seed, 0, STREAM_EVAL))
            else:
                try:  # every rank must agree, or one would wait in the all-reduce for the others
                    self._held_out = D.all_or_none(self.dist, lambda: make_batches(exp.data, batch, seed, split="test"))
                except (DataError, OSError, D.PeerFailed) as exc:
                    self._held_out_error = f"no held-out losses: the test split cannot be read ({exc})"
                    self.emit({"type": "warning", "message": self._held_out_error})
        if self._held_out is None:
            return None
        x = self._held_out.batch(k, device=None)
        d = self.dist
        return (D.shard(x, d.rank, d.world) if d is not None else x).to(self.state.device)

    def eval_losses(self, k: int) -> Optional[dict]:
        """Every loss term of the EMA model on held-out batch k (mean over the global batch)."""
        x = self._held_out_batch(k)
        if x is None:
            return None
        state, d = self.state, self.dist
        gen = _gen(int(self.experiment.training.seed), k, STREAM_EVAL, d, device=state.device)
        res = state.loss(self._ema_score(), x, generator=gen, create_graph=False)
        names = list(res.terms)
        vec = torch.stack([res.total.detach().reshape(()).double()] + [res.terms[n].detach().reshape(()).double() for n in names])
        if d is not None:
            vec = d.all_sum(vec) / d.world
        values = vec.tolist()
        out = {"type": "eval", "step": int(k), "loss": values[0], "terms": {n: values[1 + i] for i, n in enumerate(names)}}
        if not all(math.isfinite(v) for v in values):
            # a diverging run: the training loss stops it (with the last good checkpoint) once its
            # own batch shows it; the event schema (JSON numbers) has no NaN, so say it in words
            bad = ", ".join(f"{n}={v}" for n, v in zip(["loss"] + names, values) if not math.isfinite(v))
            if self.is_main:
                self.emit({"type": "warning", "message": f"step {k}: held-out loss of the EMA model is not finite ({bad})"})
            return None
        if self.is_main:
            self.emit(out)
            self.board.scalars(k, {"eval_loss": out["loss"]})
            self.board.scalars(k, out["terms"], prefix="eval/")
        return out

    # -- snapshot samples ----------------------------------------------------------------------

    def snapshot_samples_at(self, k: int) -> Optional[dict]:
        exp, state, d = self.experiment, self.state, self.dist
        t0 = time.perf_counter()
        n = self.snapshot_samples
        lo, hi = D.shard_bounds(n, d.rank, d.world) if d is not None else (0, n)
        spec = sampler_spec(exp)
        gen = _gen(int(exp.training.seed), k, STREAM_SNAPSHOT, d, device=state.device)
        res = draw(self._ema_score(), spec, hi - lo, sample_shape(exp), generator=gen, device=state.device) if hi > lo else None
        image = not isinstance(exp.data, C.ToyDataConfig)
        x = res.x.detach().cpu() if res is not None else torch.empty(0, *sample_shape(exp))
        if image:
            x = I.to_uint8(inverse_scaler(exp.data)(x).clamp(0, 1))
        nfe = res.nfe if res is not None else 0
        if d is not None:
            parts = d.gather_objects((x, nfe))
            x, nfe = torch.cat([p[0] for p in parts]), max(p[1] for p in parts)
        if not self.is_main:
            return None
        out_dir = os.path.join(self.workdir, "samples", f"iter_{k}")
        os.makedirs(out_dir, exist_ok=True)
        npz = os.path.join(out_dir, "sample.npz")
        png = os.path.join(out_dir, "sample.png")
        from ..files import atomic_path

        with atomic_path(npz, suffix=".tmp.npz") as tmp:
            np.savez(tmp, samples=(x.permute(0, 2, 3, 1).numpy() if image else x.numpy()))
        if image:
            g = I.grid(x)
            I.save_png(png, g)
            self.board.image("samples", g, k)
        elif x.shape[1] == 2:
            from ..plots import SamplesPanel, panels_figure

            panels_figure(png, [SamplesPanel(points=x.numpy(), title=f"{exp.name} step {k}")])
        else:
            png = None
        event = {"type": "samples", "step": int(k), "path": npz, "png": png, "n": int(x.shape[0]), "nfe": int(nfe),
                 "method": spec.method, "seconds": time.perf_counter() - t0}
        self.emit(event)
        return event

    # -- snapshot likelihood -------------------------------------------------------------------

    def _bpd_subset(self) -> Tensor:
        """The first n test points, fixed for the whole run (images in [0,1] before dequantisation)."""
        if self._bpd_points is None:
            exp = self.experiment
            n = self.snapshot_bpd
            if isinstance(exp.data, C.ToyDataConfig):
                from .. import toys

                g = step_generator(int(exp.training.seed), 0, STREAM_SNAPSHOT_BPD)
                self._bpd_points = toys.sample_toy(exp.data.dataset, n, dim=exp.data.dim, scale=exp.data.scale, generator=g)
            else:
                imgs = load_images(exp.data, "test")
                # model space without dequantisation: bits_per_dim dequantises with its own noise
                self._bpd_points = I.model_space(imgs.images[:n], bool(exp.data.centered))
        return self._bpd_points

    def snapshot_likelihood(self, k: int) -> Optional[dict]:
        """bits/dim (images) or NLL in nats (toys) of the EMA model on the fixed subset."""
        from ..likelihood import bits_per_dim

        exp, state, d = self.experiment, self.state, self.dist
        t0 = time.perf_counter()
        image = not isinstance(exp.data, C.ToyDataConfig)
        try:
            pts = D.all_or_none(d, self._bpd_subset)
        except (DataError, OSError, D.PeerFailed) as exc:
            self.emit({"type": "warning", "message": f"no snapshot bits/dim: the test split cannot be read ({exc})"})
            self.snapshot_bpd = 0
            return None
        bc = exp.eval.bpd
        lo, hi = D.shard_bounds(pts.shape[0], d.rank, d.world) if d is not None else (0, pts.shape[0])
        batch = max(1, int(exp.eval.batch_size))
        vals, nfes = [], []
        model = self._ema_score()
        for i in range(lo, hi, batch):
            j = min(hi, i + batch)
            # one generator per batch of the fixed subset: the same noise at every snapshot
            g = step_generator(int(exp.training.seed), i, STREAM_SNAPSHOT_BPD, device=state.device)
            x = pts[i:j].to(state.device)
            divergence = bc.divergence or ("hutchinson" if image else "exact")
            options = None if bc.solver == "dopri5" else {"step_size": (1.0 - float(bc.eps)) / FIXED_STEPS}
            dequantize = bool(bc.dequantize if bc.dequantize is not None else image)
            r = bits_per_dim(model, x, centered=bool(getattr(exp.data, "centered", False)) if image else False,
                             dequantize=dequantize, repeats=1, generator=g, eps=float(bc.eps), rtol=float(bc.rtol),
                             atol=float(bc.atol), method=bc.solver, divergence=divergence, probe=bc.probe,
                             options=options)
            vals.append(r.per_sample[0].cpu() if image else r.nll[0].cpu())
            nfes.append(int(r.nfe[0]))
        v = torch.cat(vals) if vals else torch.empty(0)
        if d is not None:
            parts = d.gather_objects((v, nfes))
            v = torch.cat([p[0] for p in parts])
            nfes = [n for p in parts for n in p[1]]
        if not self.is_main:
            return None
        mean = float(v.mean())
        se = float(v.std(unbiased=True) / math.sqrt(v.numel())) if v.numel() > 1 else None
        key = "bpd" if image else "nll"
        if not math.isfinite(mean) or (se is not None and not math.isfinite(se)):
            self.emit({"type": "warning", "message": f"step {k}: snapshot {key} of the EMA model is not finite ({mean}, s.e. {se})"})
            return None
        event = {"type": "bpd", "step": int(k), "metric": key, "value": mean, "stderr": se, "n": int(v.numel()),
                 "nfe": float(np.mean(nfes)) if nfes else 0.0, "seconds": time.perf_counter() - t0}
        self.emit(event)
        self.board.scalars(k, {f"snapshot/{key}": mean})
        return event

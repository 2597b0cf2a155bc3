"""Ops of evaluation at scale (``src/protocol/ops/scale.ts``): bits/dim over a whole data set,
samples in shards, FID / IS / KID and reference statistics. Each is collective in a job (every
rank computes its share; ``worker_dist.COLLECTIVE_OPS``), resumable from its output directory, and
a thin adapter: read the arguments, make one call into ``fpdiff.evaluation``, return the result.

Progress events: ``{type: "progress", done, total, unit, elapsedSeconds, bpd?, stderr?, nfe?}``
after each round of units (at most every ``eventIntervalSeconds``).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from .. import config as C
from .. import distributed as D
from ..data import DataError, load_images
from ..evaluation import bpd_dataset as B
from ..evaluation import fid as FID
from ..evaluation import images as I
from ..evaluation.fid_stats import dataset_stats
from ..evaluation.sample_shards import collect, nfe_summary, sample_units
from ..evaluation.sampler import sample_shape, sampler_spec
from ..evaluation.shards import SettingsMismatch, ShardsStopped, WorkDir
from ..protocol import BAD_REQUEST
from . import Args, Cancelled, OpContext, OpError, op
from .state import get_model

SOLVERS = ("dopri5", "rk4", "euler")


def _opt(a: Args, kind: str, key: str, **kw: Any) -> Any:
    a.seen.add(key)
    if a.raw.get(key) is None:
        return None
    return getattr(a, kind)(key, **kw)


class _Reporter:
    """Progress events from the records of each round (rank 0), throttled."""

    def __init__(self, ctx: OpContext, total: int, unit: str, interval: float,
                 summary: Optional[Callable[[list[dict]], dict]] = None):
        self.ctx, self.total, self.unit, self.interval, self.summary = ctx, total, unit, interval, summary
        self.records: list[dict] = []
        self.t0 = time.perf_counter()
        self.last = -1e9

    def start(self, done: list[dict]) -> None:
        self.records = list(done)

    def __call__(self, recs: list[dict]) -> None:
        self.records.extend(recs)
        now = time.perf_counter()
        if now - self.last < self.interval and sum(r["hi"] - r["lo"] for r in self.records) < self.total:
            return
        self.last = now
        ev = {"type": "progress", "done": int(sum(r["hi"] - r["lo"] for r in self.records)), "total": int(self.total),
              "unit": self.unit, "elapsedSeconds": now - self.t0}
        if self.summary is not None:
            ev.update({k: v for k, v in self.summary(self.records).items() if k in ("bpd", "stderr", "nfe")})
        self.ctx.emit(ev)


def _setup(fn: Callable[[], Any]) -> Any:
    """Set-up every rank must pass (data, output directory, weights), as an OpError when it fails."""
    try:
        return D.all_or_none(D.current(), fn)
    except (DataError, OSError) as exc:
        raise OpError(BAD_REQUEST, f"args: {exc}") from None
    except (SettingsMismatch, FID.InceptionMissing, ValueError) as exc:
        raise OpError(BAD_REQUEST, str(exc)) from None
    except D.PeerFailed as exc:
        raise OpError(BAD_REQUEST, f"another rank could not start: {exc}") from None


def _stopped(exc: ShardsStopped, out: str) -> Cancelled:
    return Cancelled(f"{exc}; the finished units are kept in {out}: run the same request again to continue")


# ---------------------------------------------------------------------------------------------


@op("eval.bpd_dataset")
def eval_bpd_dataset(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Bits/dim of a loaded image model over a whole split, resumable and sharded over ranks."""
    lm = get_model(ctx.state, args.str("model"))
    weights = args.str("weights", "ema", choices=("ema", "model"))
    exp = lm.experiment
    if not C.is_image_data(exp.data):
        raise OpError(BAD_REQUEST, "args.model: whole-data-set bits/dim is for image models (toys: toy.nll)", "args.model")
    bc = exp.eval.bpd
    split = args.str("dataset", bc.dataset, choices=("test", "train"))
    n_max = _opt(args, "int", "n", min=1)
    repeats = args.int("repeats", int(bc.repeats), min=1, max=100)
    batch = args.int("batchSize", int(exp.eval.batch_size), min=1)
    solver = args.str("solver", bc.solver, choices=SOLVERS)
    rtol = args.float("rtol", float(bc.rtol), min=0)
    atol = args.float("atol", float(bc.atol), min=0)
    eps = args.float("eps", float(bc.eps), min=0, max=1)
    probe = args.str("probe", bc.probe, choices=("rademacher", "gaussian"))
    steps = args.int("steps", B.FIXED_STEPS, min=1)
    dequantize = args.bool("dequantize", True if bc.dequantize is None else bool(bc.dequantize))
    seed = args.int("seed", 0, min=0)
    out = os.path.abspath(args.str("out"))
    interval = args.float("eventIntervalSeconds", 1.0, min=0)
    args.done()
    d = D.current()
    centered = bool(exp.data.centered)

    def prepare():
        images = load_images(exp.data, split).images
        images = images[:n_max] if n_max else images
        s = B.settings(dataset=exp.data.kind, split=split, n=images.shape[0], repeats=repeats, batch_size=batch,
                       solver=solver, rtol=rtol, atol=atol, eps=eps, probe=probe, dequantize=dequantize,
                       centered=centered, seed=seed, steps=steps,
                       model={"name": exp.name, "source": lm.source, "step": lm.step, "weights": weights})
        return images, WorkDir(out, s, main=d is None or d.is_main)

    images, wd = _setup(prepare)
    rep = _Reporter(ctx, images.shape[0] * repeats, "images", interval, B.running)
    if wd.main:
        rep.start(list(wd.finished().values()))

    def on_nfe(nfe: int, _total: Any) -> None:
        ctx.check_cancelled()  # one process: a cancel need not wait for the batch's solve

    try:
        summary = B.dataset_bpd(lm.score_model(weights), images, wd, repeats=repeats, batch_size=batch, solver=solver,
                                rtol=rtol, atol=atol, eps=eps, probe=probe, dequantize=dequantize, centered=centered,
                                seed=seed, steps=steps, device=lm.device, d=d, should_stop=lambda: ctx.cancel_event.is_set(),
                                on_records=rep, on_nfe=on_nfe if d is None else None)
    except ShardsStopped as exc:
        raise _stopped(exc, out) from None
    if wd.main:
        from ..files import atomic_path
        import json

        with atomic_path(os.path.join(out, "result.json")) as tmp, open(tmp, "w") as fh:
            json.dump(summary, fh, indent=1)
    return {"out": out, "world": d.world if d is not None else 1, "seconds": time.perf_counter() - rep.t0, **summary}


def _sampling_args(args: Args, exp: Any):
    method = _opt(args, "str", "method", choices=("pc", "ode"))
    n_steps = _opt(args, "int", "N", min=1)
    return sampler_spec(exp, method=method, N=n_steps)


@op("sample.shards")
def sample_shards(args: Args, ctx: OpContext) -> dict[str, Any]:
    """n samples in .npz shards (one per batch) and a PNG grid, resumable and sharded over ranks."""
    lm = get_model(ctx.state, args.str("model"))
    weights = args.str("weights", "ema", choices=("ema", "model"))
    exp = lm.experiment
    n = args.int("n", min=1, max=10_000_000)
    batch = args.int("batchSize", min(n, 500), min=1)
    seed = args.int("seed", 0, min=0)
    out = os.path.abspath(args.str("out"))
    grid_n = args.int("grid", 64, min=0)
    interval = args.float("eventIntervalSeconds", 1.0, min=0)
    spec = _sampling_args(args, exp)
    args.done()
    d = D.current()
    image = C.is_image_data(exp.data)
    settings = {"n": n, "batchSize": batch, "seed": seed, "sampler": spec.describe(), "model": exp.name,
                "source": lm.source, "step": lm.step, "weights": weights}
    wd = _setup(lambda: WorkDir(out, settings, main=d is None or d.is_main))
    rep = _Reporter(ctx, n, "samples", interval)
    if wd.main:
        rep.start(list(wd.finished().values()))
    try:
        records = sample_units(lm.score_model(weights), spec, sample_shape(exp), wd, n=n, batch_size=batch, seed=seed,
                               device=lm.device, data_cfg=exp.data, image=image, d=d,
                               should_stop=lambda: ctx.cancel_event.is_set(), on_records=rep)
    except ShardsStopped as exc:
        raise _stopped(exc, out) from None
    result = {"out": out, "n": n, "shards": [wd.arrays_path(i) for i in sorted(records)], "nfe": nfe_summary(records),
              "sampler": spec.describe(), "world": d.world if d is not None else 1, "grid": None,
              "seconds": time.perf_counter() - rep.t0}
    if wd.main and image and grid_n > 0:
        first = collect(wd, "samples", {i: records[i] for i in sorted(records)[: max(1, -(-grid_n // batch))]})[:grid_n]
        import torch

        result["grid"] = I.save_png(os.path.join(out, "grid.png"), I.grid(torch.from_numpy(first).permute(0, 3, 1, 2)))["path"]
    return result


def _inception(args: Args):
    path = _opt(args, "str", "inception")
    resize = args.str("resize", "tf1", choices=FID.RESIZES)
    return path, resize


def _load_inception(path: Optional[str], resize: str, device: Any):
    found = FID.find_inception(path)
    sd, info = FID.load_weights(found)
    return FID.FIDInception(sd, resize=resize).to(device), info


@op("eval.fid")
def eval_fid(args: Args, ctx: OpContext) -> dict[str, Any]:
    """FID / Inception score / KID of n samples against reference statistics (resumable)."""
    lm = get_model(ctx.state, args.str("model"))
    weights = args.str("weights", "ema", choices=("ema", "model"))
    exp = lm.experiment
    if not C.is_image_data(exp.data):
        raise OpError(BAD_REQUEST, "args.model: FID is for image models", "args.model")
    n = args.int("n", 50000, min=2, max=10_000_000)
    batch = args.int("batchSize", min(n, 500), min=1)
    seed = args.int("seed", 0, min=0)
    out = os.path.abspath(args.str("out"))
    stats_path = args.str("stats")
    keep = args.bool("keepSamples", False)
    inception_path, resize = _inception(args)
    interval = args.float("eventIntervalSeconds", 1.0, min=0)
    spec = _sampling_args(args, exp)
    args.done()
    d = D.current()

    def prepare():
        ref = FID.load_stats(stats_path)
        net, info = _load_inception(inception_path, resize, lm.device)
        settings = {"n": n, "batchSize": batch, "seed": seed, "sampler": spec.describe(), "model": exp.name,
                    "source": lm.source, "step": lm.step, "weights": weights, "inceptionSha256": info["sha256"],
                    "resize": resize, "keepSamples": keep}
        return ref, net, info, WorkDir(out, settings, main=d is None or d.is_main)

    ref, net, info, wd = _setup(prepare)
    rep = _Reporter(ctx, n, "samples", interval)
    if wd.main:
        rep.start(list(wd.finished().values()))
    try:
        records = sample_units(lm.score_model(weights), spec, sample_shape(exp), wd, n=n, batch_size=batch, seed=seed,
                               device=lm.device, data_cfg=exp.data, image=True, keep_samples=keep, inception=net, d=d,
                               should_stop=lambda: ctx.cancel_event.is_set(), on_records=rep)
    except ShardsStopped as exc:
        raise _stopped(exc, out) from None
    result: dict[str, Any] = {"out": out, "stats": os.path.abspath(stats_path), "inception": info, "resize": resize,
                              "sampler": spec.describe(), "nfe": nfe_summary(records),
                              "world": d.world if d is not None else 1, "seconds": time.perf_counter() - rep.t0}
    if wd.main:
        result.update(FID.metrics(collect(wd, "pool_3", records), collect(wd, "logits", records), ref))
        if not info["verified"]:
            result["warning"] = (f"{info['path']} is not the official {FID.WEIGHTS_FILE} (sha256 {info['sha256'][:12]}…): "
                                 "the numbers are not comparable with published FIDs")
    return result


@op("eval.fid_stats")
def eval_fid_stats(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Reference statistics (pool3 activations, mean, covariance) of a data set split."""
    data_raw = args.map("data")
    from types import SimpleNamespace

    # load_images reads kind and path only (the schema has checked both)
    data_cfg = SimpleNamespace(kind=data_raw["kind"], path=data_raw.get("path"))
    split = args.str("split", "train", choices=("train", "test"))
    n_max = _opt(args, "int", "n", min=1)
    batch = args.int("batchSize", 500, min=1)
    out = os.path.abspath(args.str("out"))
    keep_pool = args.bool("keepPool", True)
    device_name = args.str("device", "auto")
    inception_path, resize = _inception(args)
    interval = args.float("eventIntervalSeconds", 1.0, min=0)
    args.done()
    import torch

    d = D.current()
    device = torch.device("cuda" if device_name == "auto" and torch.cuda.is_available() else
                          ("cpu" if device_name == "auto" else device_name))

    def prepare():
        images = load_images(data_cfg, split).images
        images = images[:n_max] if n_max else images
        net, info = _load_inception(inception_path, resize, device)
        settings = {"data": data_raw, "split": split, "n": int(images.shape[0]), "batchSize": batch,
                    "inceptionSha256": info["sha256"], "resize": resize}
        return images, net, info, WorkDir(out + ".parts", settings, main=d is None or d.is_main)

    images, net, info, wd = _setup(prepare)
    rep = _Reporter(ctx, images.shape[0], "images", interval)
    if wd.main:
        rep.start(list(wd.finished().values()))
    try:
        saved = dataset_stats(images, net, wd, out, batch_size=batch, keep_pool=keep_pool, d=d,
                              meta={"split": split, "resize": resize, "inception_sha256": info["sha256"]},
                              should_stop=lambda: ctx.cancel_event.is_set(), on_records=rep)
    except ShardsStopped as exc:
        raise _stopped(exc, out + ".parts") from None
    return {**(saved or {"path": out}), "split": split, "inception": info, "resize": resize,
            "world": d.world if d is not None else 1, "seconds": time.perf_counter() - rep.t0}

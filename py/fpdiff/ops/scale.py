"""Ops of evaluation at scale (``src/protocol/ops/scale.ts``): bits/dim over a whole data set,
samples in shards, FID / IS / KID and reference statistics. Each is collective in a job (every
rank computes its share; ``worker_dist.COLLECTIVE_OPS``), resumable from its output directory, and
a thin adapter: read the arguments, make one call into ``fpdiff.evaluation``, return the result.

Arguments arrive as the generated dataclasses (zod's defaults filled); defaults that depend on the
loaded model (split, repeats, solver, tolerances, batch size) come from its experiment's ``eval``
section. Progress events: ``{type: "progress", done, total, unit, elapsedSeconds, bpd?, stderr?,
nfe?}`` after each round of units (at most every ``eventIntervalSeconds``); the four ops share the
event schema.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from .. import config as C
from .. import distributed as D
from .._generated import types as T
from ..data import DataError, load_images
from ..evaluation import bpd_dataset as B
from ..evaluation import fid as FID
from ..evaluation import images as I
from ..evaluation.fid_stats import dataset_stats
from ..evaluation.sample_shards import collect, nfe_summary, sample_units
from ..evaluation.sampler import sample_shape, sampler_spec
from ..evaluation.shards import SettingsMismatch, ShardsStopped, WorkDir
from ..files import atomic_path
from ..protocol import BAD_REQUEST
from . import Cancelled, OpContext, OpError, bad_request, op
from .state import LoadedModel, get_model, resolve_device


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
        extra = {}
        if self.summary is not None:
            extra = {k: v for k, v in self.summary(self.records).items() if k in ("bpd", "stderr", "nfe")}
        self.ctx.emit(T.ScaleProgress(done=int(sum(r["hi"] - r["lo"] for r in self.records)), total=int(self.total),
                                      unit=self.unit, elapsed_seconds=now - self.t0, **extra))


def _setup(fn: Callable[[], Any], data_field: str) -> Any:
    """Set-up every rank must pass (data, output directory, weights), as a BAD_REQUEST naming the
    field at fault when it fails (``data_field``: where the data set's path came from)."""
    try:
        return D.all_or_none(D.current(), fn)
    except DataError as exc:
        raise bad_request(data_field, str(exc)) from None
    except FID.InceptionMissing as exc:
        raise bad_request("args.inception", str(exc)) from None
    except SettingsMismatch as exc:
        raise bad_request("args.out", str(exc)) from None
    except (OSError, ValueError) as exc:
        raise OpError(BAD_REQUEST, f"args: {exc}") from None
    except D.PeerFailed as exc:
        raise OpError(BAD_REQUEST, f"another rank could not start: {exc}") from None


def _stats(path: str) -> Any:
    """Reference statistics for FID / KID, or BAD_REQUEST naming ``args.stats``."""
    try:
        return FID.load_stats(path)
    except (OSError, ValueError) as exc:
        raise bad_request("args.stats", str(exc)) from None


def _image_model(ctx: OpContext, handle: str, refusal: str) -> LoadedModel:
    """The loaded model `handle`; BAD_REQUEST (`refusal`) unless it was trained on image data."""
    lm = get_model(ctx.state, handle)
    if not isinstance(lm.experiment.data, C.ImageDataConfig):
        raise bad_request("args.model", refusal)
    return lm


def _stopped(exc: ShardsStopped, out: str) -> Cancelled:
    return Cancelled(f"{exc}; the finished units are kept in {out}: run the same request again to continue")


# ---------------------------------------------------------------------------------------------


@op("eval.bpd_dataset")
def eval_bpd_dataset(args: T.EvalBpdDatasetArgs, ctx: OpContext) -> dict[str, Any]:
    """Bits/dim of a loaded image model over a whole split, resumable and sharded over ranks."""
    lm = _image_model(ctx, args.model, "whole-data-set bits/dim is for image models (toys: toy.nll)")
    exp = lm.experiment
    bc = exp.eval.bpd
    split = args.dataset or bc.dataset
    repeats = args.repeats or int(bc.repeats)
    batch = args.batch_size or int(exp.eval.batch_size)
    solver = args.solver or bc.solver
    rtol = float(bc.rtol) if args.rtol is None else args.rtol
    atol = float(bc.atol) if args.atol is None else args.atol
    eps = float(bc.eps) if args.eps is None else args.eps
    probe = args.probe or bc.probe
    dequantize = bool(bc.dequantize) if args.dequantize is None else args.dequantize
    out = os.path.abspath(args.out)
    d = D.current()
    centered = bool(exp.data.centered)

    def prepare():
        images = load_images(exp.data, split).images
        images = images[: args.n] if args.n else images
        s = B.settings(dataset=exp.data.kind, split=split, n=images.shape[0], repeats=repeats, batch_size=batch,
                       solver=solver, rtol=rtol, atol=atol, eps=eps, probe=probe, dequantize=dequantize,
                       centered=centered, seed=args.seed, steps=args.steps,
                       model={"name": exp.name, "source": lm.source, "step": lm.step, "weights": args.weights})
        return images, WorkDir(out, s, main=d is None or d.is_main)

    images, wd = _setup(prepare, "experiment.data.path")
    rep = _Reporter(ctx, images.shape[0] * repeats, "images", args.event_interval_seconds, B.running)
    if wd.main:
        rep.start(list(wd.finished().values()))

    def on_nfe(nfe: int, _total: Any) -> None:
        ctx.check_cancelled()  # one process: a cancel need not wait for the batch's solve

    try:
        summary = B.dataset_bpd(lm.score_model(args.weights), images, wd, repeats=repeats, batch_size=batch,
                                solver=solver, rtol=rtol, atol=atol, eps=eps, probe=probe, dequantize=dequantize,
                                centered=centered, seed=args.seed, steps=args.steps, device=lm.device, d=d,
                                should_stop=lambda: ctx.cancel_event.is_set(), on_records=rep,
                                on_nfe=on_nfe if d is None else None)
    except ShardsStopped as exc:
        raise _stopped(exc, out) from None
    if wd.main:
        import json

        with atomic_path(os.path.join(out, "result.json")) as tmp, open(tmp, "w") as fh:
            json.dump(summary, fh, indent=1)
    # the summary is result.json's content (its keys are that file's, camelCase, as the schema's)
    return {"out": out, "world": d.world if d is not None else 1, "seconds": time.perf_counter() - rep.t0, **summary}


def _sampler(args: Any, exp: Any):
    """The sampler the request asks for (method, N), else the experiment's."""
    return sampler_spec(exp, method=args.method, N=args.N)


def _sampling(args: Any, lm: LoadedModel) -> tuple[int, str, Any, dict[str, Any]]:
    """What a request for n samples of a loaded model fixes: the batch, the output directory, the
    sampler, and the settings its work directory is kept for (another request cannot continue it)."""
    batch = min(args.n, args.batch_size)
    spec = _sampler(args, lm.experiment)
    settings = {"n": args.n, "batchSize": batch, "seed": args.seed, "sampler": spec.describe(), "model": lm.experiment.name,
                "source": lm.source, "step": lm.step, "weights": args.weights}
    return batch, os.path.abspath(args.out), spec, settings


@op("sample.shards")
def sample_shards(args: T.SampleShardsArgs, ctx: OpContext) -> T.SampleShardsResult:
    """n samples in .npz shards (one per batch) and a PNG grid, resumable and sharded over ranks."""
    lm = get_model(ctx.state, args.model)
    exp, n = lm.experiment, args.n
    batch, out, spec, settings = _sampling(args, lm)
    d = D.current()
    image = isinstance(exp.data, C.ImageDataConfig)
    wd = _setup(lambda: WorkDir(out, settings, main=d is None or d.is_main), "experiment.data.path")
    rep = _Reporter(ctx, n, "samples", args.event_interval_seconds)
    if wd.main:
        rep.start(list(wd.finished().values()))
    try:
        records = sample_units(lm.score_model(args.weights), spec, sample_shape(exp), wd, n=n, batch_size=batch,
                               seed=args.seed, device=lm.device, data_cfg=exp.data, image=image, d=d,
                               should_stop=lambda: ctx.cancel_event.is_set(), on_records=rep)
    except ShardsStopped as exc:
        raise _stopped(exc, out) from None
    grid = None
    if wd.main and image and args.grid > 0:
        first = collect(wd, "samples", {i: records[i] for i in sorted(records)[: max(1, -(-args.grid // batch))]})[: args.grid]
        import torch

        grid = I.save_png(os.path.join(out, "grid.png"), I.grid(torch.from_numpy(first).permute(0, 3, 1, 2)))["path"]
    return T.SampleShardsResult(
        out=out, n=n, shards=[wd.arrays_path(i) for i in sorted(records)], nfe=T.SampleShardsResultNfe(**nfe_summary(records)),
        sampler=spec.describe(), world=d.world if d is not None else 1, grid=grid, seconds=time.perf_counter() - rep.t0)


def _load_inception(path: Optional[str], resize: str, device: Any):
    found = FID.find_inception(path)
    sd, info = FID.load_weights(found)
    return FID.FIDInception(sd, resize=resize).to(device), info


@op("eval.fid")
def eval_fid(args: T.EvalFidArgs, ctx: OpContext) -> dict[str, Any]:
    """FID / Inception score / KID of n samples against reference statistics (resumable)."""
    lm = _image_model(ctx, args.model, "FID is for image models")
    exp, n = lm.experiment, args.n
    batch, out, spec, sampling = _sampling(args, lm)
    d = D.current()

    def prepare():
        ref = _stats(args.stats)
        net, info = _load_inception(args.inception, args.resize, lm.device)
        settings = {**sampling, "inceptionSha256": info["sha256"], "resize": args.resize, "keepSamples": args.keep_samples}
        return ref, net, info, WorkDir(out, settings, main=d is None or d.is_main)

    ref, net, info, wd = _setup(prepare, "experiment.data.path")
    rep = _Reporter(ctx, n, "samples", args.event_interval_seconds)
    if wd.main:
        rep.start(list(wd.finished().values()))
    try:
        records = sample_units(lm.score_model(args.weights), spec, sample_shape(exp), wd, n=n, batch_size=batch,
                               seed=args.seed, device=lm.device, data_cfg=exp.data, image=True,
                               keep_samples=args.keep_samples, inception=net, d=d,
                               should_stop=lambda: ctx.cancel_event.is_set(), on_records=rep)
    except ShardsStopped as exc:
        raise _stopped(exc, out) from None
    result: dict[str, Any] = {"out": out, "stats": os.path.abspath(args.stats), "inception": info, "resize": args.resize,
                              "sampler": spec.describe(), "nfe": nfe_summary(records),
                              "world": d.world if d is not None else 1, "seconds": time.perf_counter() - rep.t0}
    if wd.main:
        result.update(FID.metrics(collect(wd, "pool_3", records), collect(wd, "logits", records), ref))
        if not info["verified"]:
            result["warning"] = (f"{info['path']} is not the official {FID.WEIGHTS_FILE} (sha256 {info['sha256'][:12]}…): "
                                 "the numbers are not comparable with published FIDs")
    return result


@op("eval.fid_stats")
def eval_fid_stats(args: T.EvalFidStatsArgs, ctx: OpContext) -> dict[str, Any]:
    """Reference statistics (pool3 activations, mean, covariance) of a data set split."""
    out = os.path.abspath(args.out)
    device = resolve_device(args.device)
    d = D.current()

    def prepare():
        images = load_images(args.data, args.split).images  # reads the data's kind and path only
        images = images[: args.n] if args.n else images
        net, info = _load_inception(args.inception, args.resize, device)
        settings = {"data": {"kind": args.data.kind, **({"path": args.data.path} if args.data.path else {})},
                    "split": args.split, "n": int(images.shape[0]), "batchSize": args.batch_size,
                    "inceptionSha256": info["sha256"], "resize": args.resize}
        return images, net, info, WorkDir(out + ".parts", settings, main=d is None or d.is_main)

    images, net, info, wd = _setup(prepare, "args.data.path")
    rep = _Reporter(ctx, images.shape[0], "images", args.event_interval_seconds)
    if wd.main:
        rep.start(list(wd.finished().values()))
    try:
        saved = dataset_stats(images, net, wd, out, batch_size=args.batch_size, keep_pool=args.keep_pool, d=d,
                              meta={"split": args.split, "resize": args.resize, "inception_sha256": info["sha256"]},
                              should_stop=lambda: ctx.cancel_event.is_set(), on_records=rep)
    except ShardsStopped as exc:
        raise _stopped(exc, out + ".parts") from None
    return {**(saved or {"path": out}), "split": args.split, "inception": info, "resize": args.resize,
            "world": d.world if d is not None else 1, "seconds": time.perf_counter() - rep.t0}

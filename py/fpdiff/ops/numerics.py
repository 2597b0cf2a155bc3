"""Ops of the numerics area: per-term losses of a model on a batch, the score-FPE residual and the
ScoreODE Fisher divergence along t, ODE log-likelihood / bits-per-dim, and sampling.

Schemas: ``src/protocol/ops/numerics.ts``. Every op takes a loaded model ``{model: handle,
weights: "ema" | "model"}`` (see ``ops/state.py``). Points come either from the caller (``x``, a
tensor in model space) or from the model's data: toy sets are sampled with a seed, image sets are
read from the experiment's data path (``split``), the first ``n`` images. Long ops emit throttled
``progress {done, total, nfe, elapsedSeconds}`` events and honour cancellation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Optional

import torch

from .. import config as C
from .. import toys
from ..protocol import BAD_REQUEST
from . import Args, OpContext, OpError, op
from .state import LoadedModel, get_model

Tensor = torch.Tensor

STREAM_POINTS = 201  # seeds of the points these ops draw: independent of training and toy.* streams
STREAM_NOISE = 202
SOLVERS = ("dopri5", "rk4", "euler")


# ---------------------------------------------------------------------------------------------
# Helpers


def _opt(a: Args, kind: str, key: str, **kw: Any) -> Any:
    a.seen.add(key)
    if a.raw.get(key) is None:
        return None
    return getattr(a, kind)(key, **kw)


def _seed(seed: int, stream: int) -> int:
    from ..data import step_seed

    return step_seed(seed, 0, stream)


class _Progress:
    """Throttled progress events + cancellation; usable as a `callback(step, total)`."""

    def __init__(self, ctx: OpContext, total: int, interval: float = 1.0):
        self.ctx, self.total, self.interval = ctx, total, interval
        self.done = 0
        self.nfe = 0
        self.t0 = time.perf_counter()
        self.last = self.t0

    def __call__(self, step: int, _total: Any = None) -> None:
        self.ctx.check_cancelled()
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.ctx.emit({"type": "progress", "done": self.done, "total": self.total,
                           "nfe": self.nfe + int(step), "elapsedSeconds": now - self.t0})

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def _points(args: Args, lm: LoadedModel, n_default: int, seed: int) -> Tensor:
    """Model-space points [n, ...] on the model's device: `x` if given, else the model's data."""
    data = lm.experiment.data
    x = _opt(args, "tensor", "x")
    n = args.int("n", n_default, min=1, max=10_000_000)
    split = args.str("split", "test", choices=("test", "train"))
    if x is not None:
        if x.dim() < 2:
            raise OpError(BAD_REQUEST, "args.x: expected a batch [n, ...]", "args.x")
        return x.to(lm.device, torch.float32)
    if isinstance(data, C.ToyDataConfig):
        g = torch.Generator().manual_seed(_seed(seed, STREAM_POINTS))
        pts = toys.sample_toy(data.dataset, n, dim=data.dim, scale=data.scale, generator=g)
        return pts.to(lm.device)
    from .. import data as D

    try:
        images = D.load_images(data, split)
    except (D.DataError, OSError) as exc:
        raise OpError(BAD_REQUEST, f"args.x: no points given and the model's data cannot be read: {exc}", "args.x") from None
    g = torch.Generator().manual_seed(_seed(seed, STREAM_NOISE))
    return D.preprocess(images.images[:n], data, train=False, generator=g, device=lm.device)


def _weights(args: Args) -> str:
    return args.str("weights", "ema", choices=("ema", "model"))


def _floats(d: dict[str, Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in d.items()}


def _times(raw: Any, field: str) -> list[float]:
    if isinstance(raw, torch.Tensor):
        raw = raw.reshape(-1).tolist()
    if not isinstance(raw, list) or not raw or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        raise OpError(BAD_REQUEST, f"{field}: expected a non-empty list of times", field)
    ts = [float(v) for v in raw]
    if not all(0.0 < v <= 1.0 for v in ts):
        raise OpError(BAD_REQUEST, f"{field}: times must lie in (0, 1]", field)
    return ts


# ---------------------------------------------------------------------------------------------
# loss.eval


@op("loss.eval")
def loss_eval(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Per-term losses of a model on a batch (the experiment's loss, or `loss` given here)."""
    from ..losses import build_loss

    lm = get_model(args, ctx.state)
    weights = _weights(args)
    seed = args.int("seed", 0, min=0)
    raw_loss = _opt(args, "map", "loss")
    t_fixed = _opt(args, "float", "t", min=0.0, max=1.0)
    batch = args.int("batchSize", 1024, min=1)
    x = _points(args, lm, 1024, seed)
    args.done()
    loss_cfg = lm.experiment.loss
    if raw_loss is not None:
        try:
            loss_cfg = C.section_from_wire(C.LossConfig, raw_loss, "loss")
        except C.ConfigError as err:
            raise OpError(BAD_REQUEST, f"args.{err.path}: {err.message}", f"args.{err.path}") from None
    expr = build_loss(loss_cfg)
    model = lm.score_model(weights)
    gen = torch.Generator(device=lm.device).manual_seed(_seed(seed, STREAM_NOISE))
    progress = _Progress(ctx, x.shape[0])
    sums: dict[str, float] = {}
    wsums: dict[str, float] = {}
    total = 0.0
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        t = None if t_fixed is None else torch.full((xb.shape[0],), t_fixed, device=xb.device)
        # grad mode stays on: the derivative terms differentiate in x; nothing is kept afterwards
        res = expr(model, xb, generator=gen, t=t, create_graph=False)
        w = xb.shape[0]
        total += float(res.total.detach()) * w
        for k, v in _floats(res.terms).items():
            sums[k] = sums.get(k, 0.0) + v * w
        for k, v in _floats(res.weighted).items():
            wsums[k] = wsums.get(k, 0.0) + v * w
        progress.done += w
        progress(0)
    n = x.shape[0]
    return {"loss": total / n, "terms": {k: v / n for k, v in sums.items()},
            "weighted": {k: v / n for k, v in wsums.items()}, "n": n, "seconds": progress.seconds}


# ---------------------------------------------------------------------------------------------
# diagnostics


@op("diagnostics.fpe_residual")
def fpe_residual(args: Args, ctx: OpContext) -> dict[str, Any]:
    """The score-FPE residual ‖∂t s − ∇x φ‖ of a model as a function of t (FP-Diffusion's plot)."""
    from ..derivatives import parse_dt
    from ..diagnostics import fpe_residual_curve

    lm = get_model(args, ctx.state)
    weights = _weights(args)
    seed = args.int("seed", 0, min=0)
    ts = _times(args.any("t"), "args.t")
    image = C.is_image_data(lm.experiment.data)
    div = args.str("div", "hutchinson" if image else "exact", choices=("exact", "hutchinson"))
    dt_raw = args.any("dt", "autodiff")
    points = args.str("points", "pert", choices=("pert", "x"))
    probe = args.str("probe", "rademacher", choices=("rademacher", "gaussian"))
    n_probes = args.int("nProbes", 1, min=1, max=4096)
    x = _points(args, lm, 256 if not image else 16, seed)
    args.done()
    try:
        dt = parse_dt(dt_raw)
    except ValueError as exc:
        raise OpError(BAD_REQUEST, f"args.dt: {exc}", "args.dt") from None
    if div == "exact" and x[0].numel() > 256:
        raise OpError(BAD_REQUEST, f"args.div: the exact divergence needs D ≤ 256, the data has D = {x[0].numel()}", "args.div")
    progress = _Progress(ctx, len(ts))
    gen = torch.Generator(device=lm.device).manual_seed(_seed(seed, STREAM_NOISE))

    def tick(i: int, total: int) -> None:
        progress.done = i
        progress(0)

    curve = fpe_residual_curve(lm.score_model(weights), x, ts, div=div, dt=dt, points=points, probe=probe,
                               n_probes=n_probes, generator=gen, callback=tick)
    curve["n"] = x.shape[0]
    curve["seconds"] = progress.seconds
    curve["perDimSq"] = curve.pop("per_dim_sq")
    return curve


@op("diagnostics.fisher")
def fisher(args: Args, ctx: OpContext) -> dict[str, Any]:
    """For toy mixtures: the weighted Fisher divergence of the ScoreODE's own score to the data
    score along t (high-order DSM paper, Fig. 3), beside the model score's."""
    from ..diagnostics import fisher_curve

    lm = get_model(args, ctx.state)
    weights = _weights(args)
    seed = args.int("seed", 0, min=0)
    ts = _times(args.any("t"), "args.t")
    rtol = args.float("rtol", 1e-5, min=0)
    atol = args.float("atol", 1e-5, min=0)
    method = args.str("method", "dopri5", choices=SOLVERS)
    data = lm.experiment.data
    if not isinstance(data, C.ToyDataConfig):
        raise OpError(BAD_REQUEST, "args.model: the Fisher diagnostic needs a toy model", "args.model")
    mix = toys.toy_law(data.dataset, data.dim, data.scale)
    if mix is None:
        raise OpError(BAD_REQUEST, f"args.model: the data score of {data.dataset!r} is not known in closed form "
                                   "(use checkerboard, mog1d, mog2d or gaussian)", "args.model")
    x = _points(args, lm, 500, seed)
    args.done()
    progress = _Progress(ctx, len(ts))
    gen = torch.Generator(device=lm.device).manual_seed(_seed(seed, STREAM_NOISE))
    truth = mix.to(dtype=x.dtype, device=lm.device).score_model(lm.sde)

    def tick(i: int, total: int) -> None:
        progress.done = i
        progress(0)

    curve = fisher_curve(lm.score_model(weights), truth, x, ts, rtol=rtol, atol=atol, method=method, generator=gen,
                         callback=tick)
    return {"t": curve["t"], "fisherOde": curve["fisher_ode"], "fisherModel": curve["fisher_model"],
            "odeVsModel": curve["ode_vs_model"], "n": x.shape[0], "seconds": progress.seconds}


# ---------------------------------------------------------------------------------------------
# likelihood


@op("likelihood.nll")
def likelihood_nll(args: Args, ctx: OpContext) -> dict[str, Any]:
    """NLL (nats) and, for images, bits/dim by the probability-flow ODE (FACTS §5)."""
    from ..likelihood import bits_per_dim, bpd_offset

    lm = get_model(args, ctx.state)
    weights = _weights(args)
    seed = args.int("seed", 0, min=0)
    bpd_cfg = lm.experiment.eval.bpd
    image = C.is_image_data(lm.experiment.data)
    method = args.str("method", bpd_cfg.solver, choices=SOLVERS)
    eps = args.float("eps", bpd_cfg.eps, min=0, max=1)
    rtol = args.float("rtol", bpd_cfg.rtol, min=0)
    atol = args.float("atol", bpd_cfg.atol, min=0)
    steps = args.int("steps", 100, min=1)
    divergence = args.str("divergence", bpd_cfg.divergence or ("hutchinson" if image else "exact"),
                          choices=("exact", "hutchinson"))
    probe = args.str("probe", bpd_cfg.probe, choices=("rademacher", "gaussian"))
    dequantize = args.bool("dequantize", bool(bpd_cfg.dequantize) if bpd_cfg.dequantize is not None else image)
    repeats = args.int("repeats", bpd_cfg.repeats, min=1, max=100)
    batch = args.int("batchSize", lm.experiment.eval.batch_size, min=1)
    x = _points(args, lm, 1000 if not image else 64, seed)
    args.done()
    if dequantize and not image:
        raise OpError(BAD_REQUEST, "args.dequantize: dequantisation applies to 8-bit image data only", "args.dequantize")
    centered = bool(getattr(lm.experiment.data, "centered", False))
    model = lm.score_model(weights)
    gen = torch.Generator(device=lm.device).manual_seed(_seed(seed, STREAM_NOISE))
    options = None if method == "dopri5" else {"step_size": (1.0 - eps) / steps}
    progress = _Progress(ctx, x.shape[0])
    nll, bpd, nfe, solvers = [], [], 0, set()
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        res = bits_per_dim(model, xb, centered=centered, dequantize=dequantize, repeats=repeats, generator=gen,
                           eps=eps, rtol=rtol, atol=atol, method=method, divergence=divergence, probe=probe,
                           options=options, callback=progress)
        nll.append(res.nll.mean(0).detach().cpu())  # mean over repeats, per sample
        bpd.append(res.per_sample.mean(0).detach().cpu())
        nfe += sum(res.nfe)
        solvers.update(res.solvers)
        progress.nfe = nfe
        progress.done += xb.shape[0]
    nll_t = torch.cat(nll).double()
    bpd_t = torch.cat(bpd).double()
    n = nll_t.shape[0]
    se = float(nll_t.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    d = x[0].numel()
    return {
        "nll": float(nll_t.mean()),
        "nllStderr": se,
        "bpd": float(bpd_t.mean()) if image else None,
        "bpdStderr": se / (d * math.log(2.0)) if image else None,
        "offset": bpd_offset(centered) if image else None,
        "perSample": nll_t.float(),
        "n": n,
        "dim": d,
        "repeats": repeats,
        "nfe": nfe,
        # "dopri5", or the fallback that had to take over (see likelihood.solve_ode)
        "solver": ", ".join(sorted(solvers)),
        "seconds": progress.seconds,
        "step": lm.step,
    }


# ---------------------------------------------------------------------------------------------
# sample


@op("sample")
def sample(args: Args, ctx: OpContext) -> dict[str, Any]:
    """n samples of a model by its experiment's sampler (PC or probability-flow ODE), overridable."""
    from .. import sampling as S
    from ..data import inverse_scaler

    lm = get_model(args, ctx.state)
    weights = _weights(args)
    n = args.int("n", min=1, max=1_000_000)
    seed = args.int("seed", 0, min=0)
    batch = args.int("batchSize", n, min=1)
    cfg = lm.experiment.sampling
    method = args.str("method", cfg.method if cfg is not None else "pc", choices=("pc", "ode"))
    default_eps = cfg.eps if cfg is not None and cfg.eps is not None else C.default_sampling_eps(lm.experiment.sde)
    eps = args.float("eps", default_eps, min=0, max=1)
    data = lm.experiment.data
    if isinstance(data, C.ToyDataConfig):
        shape_one: tuple[int, ...] = (int(data.dim or 2),)
    else:
        shape_one = (int(data.num_channels), int(data.image_size), int(data.image_size))
    other = ("solver", "rtol", "atol", "steps") if method == "pc" else ("predictor", "corrector", "snr", "nStepsEach", "N")
    for key in other:
        if args.raw.get(key) is not None:
            raise OpError(BAD_REQUEST, f"args.{key}: applies to method {'ode' if method == 'pc' else 'pc'!r}; "
                                       f"this request samples with {method!r}", f"args.{key}")
    if method == "pc":
        pc = cfg if isinstance(cfg, C.PCSamplingConfig) else C.PCSamplingConfig()
        kw: dict[str, Any] = dict(
            predictor=args.str("predictor", pc.predictor, choices=S.PREDICTORS),
            corrector=args.str("corrector", pc.corrector, choices=S.CORRECTORS),
            snr=args.float("snr", pc.snr, min=0),
            n_steps_each=args.int("nStepsEach", pc.n_steps_each, min=1),
            noise_removal=args.bool("noiseRemoval", pc.noise_removal),
            N=args.int("N", pc.N if pc.N is not None else lm.sde.N, min=1),
        )

    else:
        oc = cfg if isinstance(cfg, C.ODESamplingConfig) else C.ODESamplingConfig()
        solver = args.str("solver", oc.solver, choices=SOLVERS)
        steps = args.int("steps", 100, min=1)
        kw = dict(rtol=args.float("rtol", oc.rtol, min=0), atol=args.float("atol", oc.atol, min=0), method=solver,
                  noise_removal=args.bool("noiseRemoval", oc.noise_removal),
                  options=None if solver == "dopri5" else {"step_size": (1.0 - eps) / steps})

    args.done()
    model = lm.score_model(weights)
    gen = torch.Generator(device=lm.device).manual_seed(_seed(seed, STREAM_NOISE))
    progress = _Progress(ctx, n)
    out, nfe = [], 0
    for i in range(0, n, batch):
        b = min(batch, n - i)
        fn = S.pc_sample if method == "pc" else S.ode_sample
        res = fn(model, (b, *shape_one), eps=eps, generator=gen, device=lm.device, dtype=torch.float32,
                 callback=progress, **kw)
        out.append(res.x.detach().cpu())
        nfe += res.nfe
        progress.nfe = nfe
        progress.done += b
    x = torch.cat(out)
    if not isinstance(data, C.ToyDataConfig):
        x = inverse_scaler(data)(x)
    return {"x": x.float(), "nfe": nfe, "method": method, "seconds": progress.seconds}

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
from typing import Any, Optional

import torch

from .. import config as C
from .. import toys
from .._generated import types as T
from . import OpContext, bad_request, op
from .progress import Progress
from .state import LoadedModel, get_model, sampler_options

Tensor = torch.Tensor

STREAM_POINTS = 201  # seeds of the points these ops draw: independent of training and toy.* streams
STREAM_NOISE = 202


# ---------------------------------------------------------------------------------------------
# Helpers


def _seed(seed: int, stream: int) -> int:
    from ..data import step_seed

    return step_seed(seed, 0, stream)


def _points(args: Any, lm: LoadedModel, n_toy: int, n_image: int) -> Tensor:
    """Model-space points [n, ...] on the model's device: `x` if given, else the model's data."""
    data = lm.experiment.data
    if args.x is not None:
        if args.x.dim() < 2:
            raise bad_request("args.x", "expected a batch [n, ...]")
        return args.x.to(lm.device, torch.float32)
    if isinstance(data, C.ToyDataConfig):
        g = torch.Generator().manual_seed(_seed(args.seed, STREAM_POINTS))
        pts = toys.sample_toy(data.dataset, args.n or n_toy, dim=data.dim, scale=data.scale, generator=g)
        return pts.to(lm.device)
    from .. import data as D

    try:
        images = D.load_images(data, args.split)
    except (D.DataError, OSError) as exc:
        raise bad_request("args.x", f"no points given and the model's data cannot be read: {exc}") from None
    g = torch.Generator().manual_seed(_seed(args.seed, STREAM_NOISE))
    return D.preprocess(images.images[: args.n or n_image], data, train=False, generator=g, device=lm.device)


def _floats(d: dict[str, Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in d.items()}


def _noise(lm: LoadedModel, seed: int) -> torch.Generator:
    return torch.Generator(device=lm.device).manual_seed(_seed(seed, STREAM_NOISE))


# ---------------------------------------------------------------------------------------------
# loss.eval


@op("loss.eval")
def loss_eval(args: T.LossEvalArgs, ctx: OpContext) -> T.LossEvalResult:
    """Per-term losses of a model on a batch (the experiment's loss, or `loss` given here)."""
    from ..losses import build_loss

    lm = get_model(ctx.state, args.model)
    x = _points(args, lm, 1024, 1024)
    expr = build_loss(args.loss if args.loss is not None else lm.experiment.loss)
    model = lm.score_model(args.weights)
    gen = _noise(lm, args.seed)
    progress = Progress(ctx, x.shape[0])
    sums: dict[str, float] = {}
    wsums: dict[str, float] = {}
    total = 0.0
    for i in range(0, x.shape[0], args.batch_size):
        xb = x[i:i + args.batch_size]
        t = None if args.t is None else torch.full((xb.shape[0],), args.t, device=xb.device)
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
    return T.LossEvalResult(loss=total / n, terms={k: v / n for k, v in sums.items()},
                            weighted={k: v / n for k, v in wsums.items()}, n=n, seconds=progress.seconds)


# ---------------------------------------------------------------------------------------------
# diagnostics


@op("diagnostics.fpe_residual")
def fpe_residual(args: T.DiagnosticsFpeResidualArgs, ctx: OpContext) -> T.FpeResidualResult:
    """The score-FPE residual ‖∂t s − ∇x φ‖ of a model as a function of t (FP-Diffusion's plot)."""
    from ..derivatives import parse_dt
    from ..diagnostics import fpe_residual_curve

    lm = get_model(ctx.state, args.model)
    image = isinstance(lm.experiment.data, C.ImageDataConfig)
    div = args.div or ("hutchinson" if image else "exact")
    x = _points(args, lm, 256, 16)
    progress = Progress(ctx, len(args.t))
    curve = fpe_residual_curve(lm.score_model(args.weights), x, list(args.t), div=div, dt=parse_dt(args.dt),
                               points=args.points, probe=args.probe, n_probes=args.n_probes,
                               generator=_noise(lm, args.seed), callback=progress.at)
    return T.FpeResidualResult(t=curve["t"], residual=curve["residual"], lhs=curve["lhs"], rhs=curve["rhs"],
                               relative=curve["relative"], per_dim_sq=curve["per_dim_sq"], n=x.shape[0],
                               seconds=progress.seconds)


@op("diagnostics.fisher")
def fisher(args: T.DiagnosticsFisherArgs, ctx: OpContext) -> T.FisherResult:
    """For toy mixtures: the weighted Fisher divergence of the ScoreODE's own score to the data
    score along t (high-order DSM paper, Fig. 3), beside the model score's."""
    from ..diagnostics import fisher_curve

    lm = get_model(ctx.state, args.model)
    data = lm.experiment.data
    if not isinstance(data, C.ToyDataConfig):
        raise bad_request("args.model", "the Fisher diagnostic needs a toy model")
    mix = toys.toy_law(data.dataset, data.dim, data.scale)
    if mix is None:
        raise bad_request("args.model", f"the data score of {data.dataset!r} is not known in closed form "
                                        "(use checkerboard, mog1d, mog2d or gaussian)")
    x = _points(args, lm, 500, 500)
    progress = Progress(ctx, len(args.t))
    truth = mix.to(dtype=x.dtype, device=lm.device).score_model(lm.sde)
    curve = fisher_curve(lm.score_model(args.weights), truth, x, list(args.t), rtol=args.rtol, atol=args.atol,
                         method=args.method, generator=_noise(lm, args.seed), callback=progress.at)
    return T.FisherResult(t=curve["t"], fisher_ode=curve["fisher_ode"], fisher_model=curve["fisher_model"],
                          ode_vs_model=curve["ode_vs_model"], n=x.shape[0], seconds=progress.seconds)


# ---------------------------------------------------------------------------------------------
# likelihood


@op("likelihood.nll")
def likelihood_nll(args: T.LikelihoodNllArgs, ctx: OpContext) -> T.NllResult:
    """NLL (nats) and, for images, bits/dim by the probability-flow ODE (docs/maths.md §8)."""
    from ..likelihood import bits_per_dim, bpd_offset

    lm = get_model(ctx.state, args.model)
    bpd_cfg = lm.experiment.eval.bpd
    image = isinstance(lm.experiment.data, C.ImageDataConfig)
    method = args.method or bpd_cfg.solver
    eps = args.eps if args.eps is not None else bpd_cfg.eps
    dequantize = args.dequantize if args.dequantize is not None else bpd_cfg.dequantize
    repeats = args.repeats or bpd_cfg.repeats
    batch = args.batch_size or lm.experiment.eval.batch_size
    if dequantize and not image:
        raise bad_request("args.dequantize", "dequantisation applies to 8-bit image data only")
    x = _points(args, lm, 1000, 64)
    centered = bool(getattr(lm.experiment.data, "centered", False))
    model = lm.score_model(args.weights)
    gen = _noise(lm, args.seed)
    options = None if method == "dopri5" else {"step_size": (1.0 - eps) / args.steps}
    progress = Progress(ctx, x.shape[0])
    nll, bpd, nfe, solvers = [], [], 0, set()
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        res = bits_per_dim(model, xb, centered=centered, dequantize=dequantize, repeats=repeats, generator=gen,
                           eps=eps, rtol=args.rtol if args.rtol is not None else bpd_cfg.rtol,
                           atol=args.atol if args.atol is not None else bpd_cfg.atol, method=method,
                           divergence=args.divergence or bpd_cfg.divergence, probe=args.probe or bpd_cfg.probe,
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
    return T.NllResult(
        nll=float(nll_t.mean()),
        nll_stderr=se,
        bpd=float(bpd_t.mean()) if image else None,
        bpd_stderr=se / (d * math.log(2.0)) if image else None,
        offset=bpd_offset(centered) if image else None,
        per_sample=nll_t.float(),
        n=n,
        dim=d,
        repeats=repeats,
        nfe=nfe,
        # "dopri5", or the fallback that had to take over (see likelihood.solve_ode)
        solver=", ".join(sorted(solvers)),
        seconds=progress.seconds,
        step=lm.step,
    )


# ---------------------------------------------------------------------------------------------
# sample


@op("sample")
def sample(args: T.SampleArgs, ctx: OpContext) -> T.SampleResult:
    """n samples of a model by its experiment's sampler (PC or probability-flow ODE), overridable."""
    from .. import sampling as S
    from ..data import inverse_scaler

    lm = get_model(ctx.state, args.model)
    method, eps, kw = sampler_options(args, lm, steps=args.steps)
    data = lm.experiment.data
    if isinstance(data, C.ToyDataConfig):
        shape_one: tuple[int, ...] = (data.dim,)
    else:
        shape_one = (data.num_channels, data.image_size, data.image_size)

    model = lm.score_model(args.weights)
    gen = _noise(lm, args.seed)
    progress = Progress(ctx, args.n)
    batch = args.batch_size or args.n
    out, nfe = [], 0
    for i in range(0, args.n, batch):
        b = min(batch, args.n - i)
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
    return T.SampleResult(x=x.float(), nfe=nfe, method=method, seconds=progress.seconds)

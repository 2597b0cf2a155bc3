"""Ops of the toy main job: toy data, a model's ODE log-density on a grid and its NLL against the
entropy floor, samples, and the report's pictures (``plot.toy``, ``plot.lines``).

Likelihoods use ``fpdiff.likelihood.ode_likelihood`` (probability-flow ODE, exact divergence for
D ≤ 2; FACTS §5) and samples ``fpdiff.sampling``. Long computations emit throttled
``progress {done, total, nfe, elapsedSeconds}`` events and honour cancellation between function
evaluations.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

import torch

from .. import config as C
from .. import toys
from ..data import step_seed
from ..protocol import BAD_REQUEST
from . import Args, OpContext, OpError, op
from .state import LoadedModel, get_model

Tensor = torch.Tensor

STREAM_TEST = 101  # test samples of toy.nll / toy.data: independent of every training stream
SOLVERS = ("dopri5", "rk4", "euler")
ODE_KEYS = ("solver", "rtol", "atol", "steps")
PC_KEYS = ("predictor", "corrector", "snr", "nStepsEach", "N")


# ---------------------------------------------------------------------------------------------
# Truth


def checkerboard_log_prob(x: Tensor, scale: Optional[float] = None) -> Tensor:
    """log density of the checkerboard (uniform 1/32 on the 8 squares of side 2 in [−4, 4]² where
    ⌊x₁/2⌋ + ⌊x₂/2⌋ is even; −inf elsewhere), scaled by ``scale``."""
    s = 1.0 if scale is None else float(scale)
    u = x.double() / s
    inside = (u >= -4).all(-1) & (u < 4).all(-1)
    cells = torch.floor(u / 2).long().sum(-1)
    on = inside & (torch.remainder(cells, 2) == 0)
    val = -math.log(32.0) - 2 * math.log(s)
    return torch.where(on, torch.full_like(u[:, 0], val), torch.full_like(u[:, 0], -math.inf))


def true_log_prob(dataset: str, x: Tensor, dim: Optional[int] = None, scale: Optional[float] = None) -> Optional[Tensor]:
    """The data law's log-density where it is known in closed form (else None)."""
    if dataset == "checkerboard":
        return checkerboard_log_prob(x, scale)
    mix = toys.toy_mixture(dataset, dim, scale)
    if mix is not None:
        return mix.log_prob0(x.double())
    return None


def entropy_floor(dataset: str, dim: Optional[int] = None, scale: Optional[float] = None,
                  seed: int = 0, n: int = 1_000_000) -> tuple[Optional[float], Optional[str]]:
    """The differential entropy (nats), the floor of any NLL: exact where toys.toy_entropy knows
    it, else a Monte-Carlo mean of −log q over n samples for the mixtures, else None."""
    h = toys.toy_entropy(dataset, dim, scale)
    if h is not None:
        return float(h), "exact"
    mix = toys.toy_mixture(dataset, dim, scale)
    if mix is None:
        return None, None
    g = torch.Generator().manual_seed(step_seed(seed, 0, STREAM_TEST + 1))
    x = mix.sample(n, g, dtype=torch.float64)
    return float(-mix.log_prob0(x).mean()), "monte-carlo"


# ---------------------------------------------------------------------------------------------
# Helpers


def _toy_model(args: Args, ctx: OpContext) -> tuple[LoadedModel, Any]:
    lm = get_model(args, ctx.state)
    data = lm.experiment.data
    if not isinstance(data, C.ToyDataConfig):
        raise OpError(BAD_REQUEST, f"{args.path}.model: {lm.handle!r} was trained on {data.kind} data; toy ops need a toy model", f"{args.path}.model")
    return lm, data


def opt(a: Args, kind: str, key: str, **kw: Any) -> Any:
    """An optional argument: None when absent or null, else read by ``Args.<kind>``."""
    a.seen.add(key)
    if a.raw.get(key) is None:
        return None
    return getattr(a, kind)(key, **kw)


def _weights(args: Args) -> str:
    return args.str("weights", "ema", choices=("ema", "model"))


class _Ticker:
    """Throttled progress events + cancellation, called at every ODE function evaluation."""

    def __init__(self, ctx: OpContext, total: int, interval: float = 1.0):
        self.ctx, self.total, self.interval = ctx, total, interval
        self.done = 0
        self.nfe = 0
        self.t0 = time.perf_counter()
        self.last = self.t0

    def __call__(self, nfe: int, _total: Any = None) -> None:
        self.ctx.check_cancelled()
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.ctx.emit({"type": "progress", "done": self.done, "total": self.total,
                           "nfe": self.nfe + nfe, "elapsedSeconds": now - self.t0})


def _ode_options(args: Args, bpd: Any) -> dict[str, Any]:
    method = args.str("method", bpd.solver, choices=SOLVERS)
    eps = args.float("eps", bpd.eps, min=0, max=1)
    out: dict[str, Any] = {"rtol": args.float("rtol", bpd.rtol, min=0), "atol": args.float("atol", bpd.atol, min=0),
                           "eps": eps, "method": method}
    steps = args.int("steps", 100, min=1)
    if method != "dopri5":
        out["options"] = {"step_size": (1.0 - eps) / steps}
    return out


def _log_density(lm: LoadedModel, weights: str, x: Tensor, ode: dict, batch: int, ticker: _Ticker) -> Tensor:
    from ..likelihood import ode_likelihood

    score = lm.score_model(weights)
    dev = lm.device
    out = []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch].to(dev, torch.float32)
        res = ode_likelihood(score, xb, divergence="exact", callback=ticker, **ode)
        ticker.nfe += res.nfe
        ticker.done += xb.shape[0]
        out.append(res.logp.detach().cpu())
    return torch.cat(out)


def _bounds(args: Args, dataset: str, dim: int, scale: Optional[float], key: str) -> tuple[list[float], list[float]]:
    """Grid bounds: given (a number for every axis, or one per axis) or the data's range ±5 %."""
    lo_raw, hi_raw = args.any(key + "Lo", None), args.any(key + "Hi", None)

    def per_axis(v: Any, name: str) -> list[float]:
        vals = v if isinstance(v, list) else [v] * dim
        if len(vals) != dim or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in vals):
            raise OpError(BAD_REQUEST, f"{args.path}.{name}: expected a number or {dim} numbers", f"{args.path}.{name}")
        return [float(a) for a in vals]

    if lo_raw is not None and hi_raw is not None:
        lo, hi = per_axis(lo_raw, key + "Lo"), per_axis(hi_raw, key + "Hi")
    else:
        if dataset == "checkerboard":
            s = 1.0 if scale is None else float(scale)
            lo, hi = [-4.4 * s] * dim, [4.4 * s] * dim
        else:
            g = torch.Generator().manual_seed(step_seed(0, 0, STREAM_TEST + 2))
            x = toys.sample_toy(dataset, 20000, dim=dim, scale=scale, generator=g, dtype=torch.float64)
            a, b = x.min(0).values, x.max(0).values
            pad = 0.05 * (b - a)
            lo, hi = (a - pad).tolist(), (b + pad).tolist()
        if lo_raw is not None:
            lo = per_axis(lo_raw, key + "Lo")
        if hi_raw is not None:
            hi = per_axis(hi_raw, key + "Hi")
    for i in range(dim):
        if not lo[i] < hi[i]:
            raise OpError(BAD_REQUEST, f"{args.path}.{key}Lo: must be below {key}Hi on every axis", f"{args.path}.{key}Lo")
    return lo, hi


# ---------------------------------------------------------------------------------------------
# Ops


@op("toy.data")
def toy_data(args: Args, ctx: OpContext) -> dict[str, Any]:
    """n samples of a toy data set (seeded), with its entropy where known."""
    dataset = args.str("dataset", choices=toys.DATASETS)
    n = args.int("n", min=1, max=10_000_000)
    dim = args.int("dim", C.TOY_DIMS.get(dataset) or 2, min=1)
    scale = opt(args, "float", "scale", min=1e-12)
    seed = args.int("seed", 0, min=0)
    args.done()
    want = C.TOY_DIMS.get(dataset)
    if want is not None and dim != want:
        raise OpError(BAD_REQUEST, f"args.dim: {dataset} lives in {want} dimension(s), got {dim}", "args.dim")
    g = torch.Generator().manual_seed(step_seed(seed, 0, STREAM_TEST))
    x = toys.sample_toy(dataset, n, dim=dim, scale=scale, generator=g, dtype=torch.float32)
    h = toys.toy_entropy(dataset, dim, scale)
    return {"x": x, "entropy": h}


@op("toy.density")
def toy_density(args: Args, ctx: OpContext) -> dict[str, Any]:
    """A toy model's ODE log-density on a 1-D / 2-D grid (exact divergence), and the true one."""
    lm, data = _toy_model(args, ctx)
    weights = _weights(args)
    n = args.int("n", 100, min=2, max=2000)
    truth = args.bool("truth", True)
    ode = _ode_options(args, lm.experiment.eval.bpd)
    dim = int(data.dim)
    if dim > 2:
        raise OpError(BAD_REQUEST, f"args.model: the grid density needs 1-D or 2-D data, this model's is {dim}-D", "args.model")
    lo, hi = _bounds(args, data.dataset, dim, data.scale, "grid")
    batch = args.int("batchSize", n ** dim, min=1)
    args.done()
    axes = [torch.linspace(lo[i], hi[i], n, dtype=torch.float64) for i in range(dim)]
    if dim == 1:
        pts = axes[0][:, None]
    else:
        yy, xx = torch.meshgrid(axes[1], axes[0], indexing="ij")  # rows follow y
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    ticker = _Ticker(ctx, pts.shape[0])
    t0 = time.perf_counter()
    logp = _log_density(lm, weights, pts.float(), ode, batch, ticker)
    shape = (n,) if dim == 1 else (n, n)
    true = true_log_prob(data.dataset, pts, dim, data.scale) if truth else None
    return {
        "axes": [a.float() for a in axes],
        "logp": logp.reshape(shape).float(),
        "trueLogp": true.reshape(shape).float() if true is not None else None,
        "nfe": ticker.nfe,
        "seconds": time.perf_counter() - t0,
    }


@op("toy.nll")
def toy_nll(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Mean NLL (nats) of fresh test samples under a toy model by the ODE, beside the entropy floor."""
    lm, data = _toy_model(args, ctx)
    weights = _weights(args)
    n = args.int("n", 2000, min=1, max=1_000_000)
    seed = args.int("seed", 0, min=0)
    ode = _ode_options(args, lm.experiment.eval.bpd)
    batch = args.int("batchSize", n, min=1)
    args.done()
    g = torch.Generator().manual_seed(step_seed(seed, 0, STREAM_TEST))
    x = toys.sample_toy(data.dataset, n, dim=data.dim, scale=data.scale, generator=g, dtype=torch.float32)
    ticker = _Ticker(ctx, n)
    t0 = time.perf_counter()
    logp = _log_density(lm, weights, x, ode, batch, ticker).double()
    nll = -logp
    floor, how = entropy_floor(data.dataset, data.dim, data.scale)
    mean = float(nll.mean())
    stderr = float(nll.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return {
        "dataset": data.dataset,
        "nll": mean,
        "stderr": stderr,
        "floor": floor,
        "floorMethod": how,
        "gap": mean - floor if floor is not None else None,
        "n": n,
        "nfe": ticker.nfe,
        "seconds": time.perf_counter() - t0,
        "step": lm.step,
    }


@op("toy.samples")
def toy_samples(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Samples of a toy model by the probability-flow ODE or the PC sampler."""
    from .. import sampling as S

    lm, data = _toy_model(args, ctx)
    weights = _weights(args)
    n = args.int("n", 2000, min=1, max=10_000_000)
    seed = args.int("seed", 0, min=0)
    cfg = lm.experiment.sampling
    method = args.str("method", cfg.method, choices=("ode", "pc"))
    default_eps = cfg.eps if cfg.eps is not None else C.default_sampling_eps(lm.experiment.sde)
    eps = args.float("eps", default_eps, min=0, max=1)
    score = lm.score_model(weights)
    dev = lm.device
    gen = torch.Generator(device=dev).manual_seed(step_seed(seed, 0, STREAM_TEST + 3))
    shape = (n, int(data.dim))
    other = PC_KEYS if method == "ode" else ODE_KEYS
    for key in other:
        if args.raw.get(key) is not None:
            raise OpError(BAD_REQUEST, f"args.{key}: applies to method {'pc' if method == 'ode' else 'ode'!r}; this request samples with {method!r}", f"args.{key}")
    progress = _Ticker(ctx, n)
    t0 = time.perf_counter()
    if method == "ode":
        ode_cfg = cfg if isinstance(cfg, C.ODESamplingConfig) else C.ODESamplingConfig()
        solver = args.str("solver", ode_cfg.solver, choices=SOLVERS)
        rtol = args.float("rtol", ode_cfg.rtol, min=0)
        atol = args.float("atol", ode_cfg.atol, min=0)
        noise_removal = args.bool("noiseRemoval", ode_cfg.noise_removal)
        steps = args.int("steps", 100, min=1)
        args.done()
        res = S.ode_sample(score, shape, rtol=rtol, atol=atol, method=solver, eps=eps, noise_removal=noise_removal,
                           generator=gen, device=dev, dtype=torch.float32, callback=progress,
                           options=None if solver == "dopri5" else {"step_size": (1.0 - eps) / steps})
    else:
        pc = cfg if isinstance(cfg, C.PCSamplingConfig) else C.PCSamplingConfig()
        predictor = args.str("predictor", pc.predictor, choices=S.PREDICTORS)
        corrector = args.str("corrector", pc.corrector, choices=S.CORRECTORS)
        snr = args.float("snr", pc.snr, min=0)
        n_steps = args.int("nStepsEach", pc.n_steps_each, min=1)
        noise_removal = args.bool("noiseRemoval", pc.noise_removal)
        N = args.int("N", pc.N if pc.N is not None else lm.sde.N, min=1)
        args.done()
        res = S.pc_sample(score, shape, predictor=predictor, corrector=corrector, snr=snr, n_steps_each=n_steps,
                          noise_removal=noise_removal, N=N, eps=eps, generator=gen, device=dev, dtype=torch.float32,
                          callback=progress)
    return {"x": res.x.detach().cpu().float(), "nfe": int(res.nfe), "method": method, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# Pictures


def _panel(raw: Any, path: str):
    from .. import plots as PL

    a = Args(raw, path)
    kind = a.str("kind", choices=("density", "samples", "curves"))
    title = a.str("title", "")
    if kind == "density":
        axes = a.list("axes")
        if len(axes) != 2:
            raise OpError(BAD_REQUEST, f"{path}.axes: a density panel needs [x, y]", f"{path}.axes")
        p = PL.DensityPanel(axes[0], axes[1], a.any("logp"), title=title, log_scale=a.bool("logScale", False),
                            vmax=opt(a, "float", "vmax"))
    elif kind == "samples":
        p = PL.SamplesPanel(a.any("x"), title=title, xlim=opt(a, "list", "xlim"), ylim=opt(a, "list", "ylim"),
                            histogram=opt(a, "bool", "histogram"))
    else:
        curves = []
        for i, c in enumerate(a.list("curves", [])):
            ca = Args(c, f"{path}.curves[{i}]")
            curves.append((ca.str("label"), ca.any("logp")))
            ca.done()
        p = PL.CurvesPanel(a.any("x"), curves, samples=opt(a, "any", "samples"), title=title)
    a.done()
    return p


def _plot_error(exc: Exception, field: str) -> OpError:
    return OpError(BAD_REQUEST, f"{field}: {exc}", field)


@op("plot.toy")
def plot_toy(args: Args, ctx: OpContext) -> dict[str, Any]:
    """A PNG of toy panels side by side: density heat-maps, sample scatters, 1-D density curves."""
    from .. import plots as PL

    path = args.str("path")
    title = opt(args, "str", "title")
    columns = opt(args, "int", "columns", min=1)
    shared = args.bool("sharedScale", True)
    panels = [_panel(p, f"args.panels[{i}]") for i, p in enumerate(args.list("panels"))]
    args.done()
    try:
        return PL.panels_figure(path, panels, title=title, columns=columns, shared_scale=shared)
    except (ValueError, TypeError) as exc:
        raise _plot_error(exc, "args.panels") from None


@op("plot.lines")
def plot_lines(args: Args, ctx: OpContext) -> dict[str, Any]:
    """A PNG line plot (ablations): series of (x, y[, yerr]) and an optional reference line."""
    from .. import plots as PL

    path = args.str("path")
    series = []
    for i, s in enumerate(args.list("series")):
        sa = Args(s, f"args.series[{i}]")
        item = {"label": opt(sa, "str", "label"), "x": sa.any("x"), "y": sa.any("y")}
        yerr = opt(sa, "any", "yerr")
        if yerr is not None:
            item["yerr"] = yerr
        sa.done()
        series.append(item)
    hline = None
    if opt(args, "map", "hline") is not None:
        ha = args.sub("hline")
        hline = {"y": ha.float("y"), "label": opt(ha, "str", "label")}
        ha.done()
    opts = dict(
        title=opt(args, "str", "title"),
        xlabel=args.str("xlabel", ""), ylabel=args.str("ylabel", ""),
        logx=args.bool("logx", False), logy=args.bool("logy", False),
    )
    args.done()
    try:
        return PL.line_plot(path, series, hline=hline, **opts)
    except (ValueError, TypeError) as exc:
        raise _plot_error(exc, "args.series") from None

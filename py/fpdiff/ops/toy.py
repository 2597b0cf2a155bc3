"""Ops of the toy main job: toy data, a model's ODE log-density on a grid (with its mass on the
data's support), its NLL of fresh test points beside the entropy floor, samples, the mechanism
curves along t, and the report's pictures (``plot.toy``, ``plot.lines``).

Thin adapters (schemas: ``src/protocol/ops/toy.ts``): each reads its arguments, then makes one
call into ``fpdiff.toys`` (truth, data), ``fpdiff.diagnostics`` (the ODE measurements and curves),
``fpdiff.sampling`` or ``fpdiff.plots``. Long ops emit throttled ``progress {done, total, nfe,
elapsedSeconds}`` events and honour cancellation.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import torch

from .. import config as C
from .. import toys
from ..data import step_seed
from ..protocol import BAD_REQUEST
from . import Args, OpContext, OpError, op
from .state import LoadedModel, get_model

Tensor = torch.Tensor

STREAM_TEST = 101  # toy.data samples: independent of every training stream
STREAM_NOISE = 202  # sampler noise
SOLVERS = ("dopri5", "rk4", "euler")
ODE_KEYS = ("solver", "rtol", "atol", "steps")
PC_KEYS = ("predictor", "corrector", "snr", "nStepsEach", "N")


# ---------------------------------------------------------------------------------------------
# Helpers


class _Progress:
    """Throttled progress events + cancellation, as a `callback(count, total)`: counts ODE function
    evaluations (`nfe`) for the solvers, finished items (`done`) for curves."""

    def __init__(self, ctx: OpContext, total: int, *, counts: str = "nfe", interval: float = 1.0):
        self.ctx, self.total, self.counts, self.interval = ctx, total, counts, interval
        self.done = 0
        self.nfe = 0
        self.t0 = time.perf_counter()
        self.last = self.t0

    def __call__(self, count: int, _total: Any = None) -> None:
        self.ctx.check_cancelled()
        if self.counts == "nfe":
            self.nfe = int(count)
        else:
            self.done = int(count)
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.ctx.emit({"type": "progress", "done": self.done, "total": self.total, "nfe": self.nfe,
                           "elapsedSeconds": now - self.t0})

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


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


def _ode_args(args: Args, lm: LoadedModel) -> dict[str, Any]:
    """ODE settings (absent ones from the experiment's eval.bpd), as `diagnostics.ode_nll` takes them."""
    bpd = lm.experiment.eval.bpd
    return {
        "eps": args.float("eps", bpd.eps, min=0, max=1),
        "rtol": args.float("rtol", bpd.rtol, min=0),
        "atol": args.float("atol", bpd.atol, min=0),
        "method": args.str("method", bpd.solver, choices=SOLVERS),
        "steps": args.int("steps", 100, min=1),
        "batch_size": opt(args, "int", "batchSize", min=1),
    }


def _bound(args: Args, key: str, dim: int) -> Optional[list[float]]:
    """A grid bound: a number for every axis or one per axis, or None."""
    v = args.any(key, None)
    if v is None:
        return None
    vals = v if isinstance(v, list) else [v] * dim
    if len(vals) != dim or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in vals):
        raise OpError(BAD_REQUEST, f"{args.path}.{key}: expected a number or {dim} numbers", f"{args.path}.{key}")
    return [float(a) for a in vals]


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
    return {"x": x, "entropy": toys.toy_entropy(dataset, dim, scale)}


@op("toy.density")
def toy_density(args: Args, ctx: OpContext) -> dict[str, Any]:
    """A toy model's ODE log-density (exact divergence) on a 1-D / 2-D grid, the true one, and the
    model's mass on the data's support (checkerboard)."""
    from ..diagnostics import toy_density as density

    lm, data = _toy_model(args, ctx)
    weights = args.str("weights", "ema", choices=("ema", "model"))
    n = args.int("n", 100, min=2, max=2000)
    truth = args.bool("truth", True)
    dim = int(data.dim)
    lo, hi = _bound(args, "gridLo", dim), _bound(args, "gridHi", dim)
    ode = _ode_args(args, lm)
    args.done()
    if dim > 2:
        raise OpError(BAD_REQUEST, f"args.model: the grid density needs 1-D or 2-D data, this model's is {dim}-D", "args.model")
    if lo is not None and hi is not None and not all(a < b for a, b in zip(lo, hi)):
        raise OpError(BAD_REQUEST, "args.gridLo: must be below gridHi on every axis", "args.gridLo")
    progress = _Progress(ctx, n**dim)
    res = density(lm.score_model(weights), data.dataset, n, dim=dim, scale=data.scale, lo=lo, hi=hi, truth=truth,
                  device=lm.device, callback=progress, **ode)
    true = res["true_logp"]
    return {
        "axes": [a.float() for a in res["axes"]],
        "logp": res["logp"].float(),
        "trueLogp": true.float() if true is not None else None,
        "massOnSupport": res["mass_on_support"],
        "massInGrid": res["mass_in_grid"],
        "nfe": int(res["nfe"]),
        "solver": ", ".join(res["solvers"]),
        "seconds": progress.seconds,
    }


@op("toy.nll")
def toy_nll(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Mean NLL (nats) of fresh test samples under a toy model by the ODE, beside the entropy floor,
    with the per-sample values (same seed → same points for every model: paired comparisons)."""
    from ..diagnostics import toy_nll as nll

    lm, data = _toy_model(args, ctx)
    weights = args.str("weights", "ema", choices=("ema", "model"))
    n = args.int("n", 2000, min=1, max=10_000_000)
    seed = args.int("seed", 0, min=0)
    ode = _ode_args(args, lm)
    args.done()
    progress = _Progress(ctx, n)
    res = nll(lm.score_model(weights), data.dataset, n, seed=seed, dim=data.dim, scale=data.scale, device=lm.device,
              callback=progress, **ode)
    floor = res["floor"]
    return {
        "dataset": data.dataset,
        "nll": res["nll"],
        "stderr": res["stderr"],
        "perSample": res["per_sample"],
        "floor": floor,
        "floorMethod": res["floor_method"],
        "gap": res["nll"] - floor if floor is not None else None,
        "n": n,
        "nfe": int(res["nfe"]),
        # "dopri5", or the fallback that had to take over (see likelihood.solve_ode)
        "solver": ", ".join(res["solvers"]),
        "seconds": progress.seconds,
        "step": lm.step,
    }


@op("toy.samples")
def toy_samples(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Samples of a toy model by the probability-flow ODE or the PC sampler (defaults: the
    experiment's sampling section)."""
    from .. import sampling as S

    lm, data = _toy_model(args, ctx)
    weights = args.str("weights", "ema", choices=("ema", "model"))
    n = args.int("n", 2000, min=1, max=1_000_000)
    seed = args.int("seed", 0, min=0)
    cfg = lm.experiment.sampling
    method = args.str("method", cfg.method if cfg is not None else "ode", choices=("pc", "ode"))
    default_eps = cfg.eps if cfg is not None and cfg.eps is not None else C.default_sampling_eps(lm.experiment.sde)
    eps = args.float("eps", default_eps, min=0, max=1)
    other = ODE_KEYS if method == "pc" else PC_KEYS
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
    gen = torch.Generator(device=lm.device).manual_seed(step_seed(seed, 0, STREAM_NOISE))
    progress = _Progress(ctx, n)
    fn = S.pc_sample if method == "pc" else S.ode_sample
    res = fn(lm.score_model(weights), (n, int(data.dim or 2)), eps=eps, generator=gen, device=lm.device,
             dtype=torch.float32, callback=progress, **kw)
    return {"x": res.x.detach().cpu().float(), "nfe": int(res.nfe), "method": method, "seconds": progress.seconds}


@op("toy.diagnostics")
def toy_diagnostics(args: Args, ctx: OpContext) -> dict[str, Any]:
    """The mechanism curves of a toy model along t: the absolute score-FPE residual beside ‖∂t s‖
    and ‖∇φ̃‖; where the data score is closed-form, ‖std·s‖ beside the truth's, the score error
    and the ScoreODE's Fisher divergence (FP-Diffusion Fig. 1/3; high-order DSM Fig. 3)."""
    from ..diagnostics import toy_mechanism

    lm, data = _toy_model(args, ctx)
    weights = args.str("weights", "ema", choices=("ema", "model"))
    ts = _times(args.any("t"), "args.t")
    n = args.int("n", 256, min=1, max=100_000)
    seed = args.int("seed", 0, min=0)
    ode = args.bool("ode", True)
    rtol = args.float("rtol", 1e-5, min=0)
    atol = args.float("atol", 1e-5, min=0)
    args.done()
    law = toys.toy_law(data.dataset, data.dim, data.scale)
    x0 = toys.test_points(data.dataset, n, seed=seed, dim=data.dim, scale=data.scale).to(lm.device)
    gen = torch.Generator(device=lm.device).manual_seed(step_seed(seed, 0, STREAM_NOISE))
    progress = _Progress(ctx, len(ts) * (2 if law is not None else 1), counts="done")
    curves = toy_mechanism(lm.score_model(weights), law, x0, ts, ode=ode, rtol=rtol, atol=atol, generator=gen,
                           callback=progress)
    return {
        "t": curves["t"],
        "residual": curves["residual"],
        "dtScore": curves["dt_score"],
        "gradPhi": curves["grad_phi"],
        "sigmaScore": curves.get("sigma_score"),
        "sigmaScoreTrue": curves.get("sigma_score_true"),
        "scoreError": curves.get("fisher_model"),
        "fisherOde": curves.get("fisher_ode"),
        "n": n,
        "seconds": progress.seconds,
    }


# ---------------------------------------------------------------------------------------------
# Pictures


def _panel(raw: Any, path: str):
    from .. import plots as PL

    a = Args(raw, path)
    kind = a.str("kind", choices=("density", "samples", "curves", "lines", "bars"))
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
    elif kind == "lines":
        series = []
        for i, raw_s in enumerate(a.list("series")):
            sa = Args(raw_s, f"{path}.series[{i}]")
            item = {"label": opt(sa, "str", "label"), "x": sa.any("x"), "y": sa.any("y"), "yerr": opt(sa, "any", "yerr"),
                    "style": opt(sa, "str", "style", choices=("-", "--", ":", "-.")), "color": opt(sa, "str", "color")}
            sa.done()
            series.append(item)
        hline = None
        if opt(a, "map", "hline") is not None:
            ha = a.sub("hline")
            hline = {"y": ha.float("y"), "label": opt(ha, "str", "label")}
            ha.done()
        p = PL.LinesPanel(series, title=title, xlabel=a.str("xlabel", ""), ylabel=a.str("ylabel", ""),
                          logx=a.bool("logx", False), logy=a.bool("logy", False), hline=hline)
    elif kind == "bars":
        p = PL.BarsPanel([str(v) for v in a.list("labels")], a.any("values"), opt(a, "any", "errors"), title=title,
                         ylabel=a.str("ylabel", ""))
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
    size = args.float("panelSize", 3.2, min=1.0, max=20.0)
    panels = [_panel(p, f"args.panels[{i}]") for i, p in enumerate(args.list("panels"))]
    args.done()
    try:
        return PL.panels_figure(path, panels, title=title, columns=columns, shared_scale=shared, panel_size=size)
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

"""Ops of the toy main job: toy data, a model's ODE log-density on a grid and its NLL against the
entropy floor, samples, and the report's pictures (``plot.toy``, ``plot.lines``).

The ODE solves and the samplers are the numerics area's ops (``likelihood.nll`` with the exact
divergence, ``sample``; ops/numerics.py), called with these ops' arguments restricted to toy
models; their throttled ``progress {done, total, nfe, elapsedSeconds}`` events and cancellation
come with them. What is added here: the grid, the true density, the entropy floor, the pictures.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from .. import config as C
from .. import toys
from ..data import step_seed
from ..protocol import BAD_REQUEST
from . import REGISTRY, Args, OpContext, OpError, op
from .state import LoadedModel, get_model

Tensor = torch.Tensor

STREAM_TEST = 101  # toy.data samples: independent of every training stream
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


def _call(name: str, raw: dict[str, Any], ctx: OpContext) -> Any:
    """Transitional: another op's handler on these args, answered as a wire value."""
    spec = REGISTRY[name]
    return spec.run(spec.parse(raw), ctx)


def _toy_model(args: Args, ctx: OpContext) -> tuple[LoadedModel, Any]:
    lm = get_model(ctx.state, args.str("model"), f"{args.path}.model")
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
    dim = opt(args, "int", "dim", min=1)
    scale = opt(args, "float", "scale", min=1e-12)
    seed = args.int("seed", 0, min=0)
    args.done()
    g = torch.Generator().manual_seed(step_seed(seed, 0, STREAM_TEST))
    try:
        x = toys.sample_toy(dataset, n, dim=dim, scale=scale, generator=g, dtype=torch.float32)
    except ValueError as exc:
        raise OpError(BAD_REQUEST, f"args.dim: {exc}", "args.dim") from None
    h = toys.toy_entropy(dataset, x.shape[1], scale)
    return {"x": x, "entropy": h}


def _delegate(args: Args, allowed: tuple[str, ...], defaults: dict[str, Any]) -> Args:
    """The request's args for a numerics op (only this op's keys; defaults where absent)."""
    extra = sorted(set(args.raw) - set(allowed))
    if extra:
        raise OpError(BAD_REQUEST, f"{args.path}.{extra[0]}: unknown field", f"{args.path}.{extra[0]}")
    raw = {k: v for k, v in args.raw.items() if v is not None}
    for k, v in defaults.items():
        raw.setdefault(k, v)
    return Args(raw, args.path)


ODE_ARGS = ("rtol", "atol", "eps", "method", "steps")


@op("toy.density")
def toy_density(args: Args, ctx: OpContext) -> dict[str, Any]:
    """A toy model's ODE log-density on a 1-D / 2-D grid (exact divergence), and the true one."""
    lm, data = _toy_model(args, ctx)
    n = args.int("n", 100, min=2, max=2000)
    truth = args.bool("truth", True)
    dim = int(data.dim)
    if dim > 2:
        raise OpError(BAD_REQUEST, f"args.model: the grid density needs 1-D or 2-D data, this model's is {dim}-D", "args.model")
    lo, hi = _bounds(args, data.dataset, dim, data.scale, "grid")
    axes = [torch.linspace(lo[i], hi[i], n, dtype=torch.float64) for i in range(dim)]
    if dim == 1:
        pts = axes[0][:, None]
    else:
        yy, xx = torch.meshgrid(axes[1], axes[0], indexing="ij")  # rows follow y
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    # The ODE solve is likelihood.nll's (numerics area) on the grid points.
    sub = _delegate(args, ("model", "weights", "n", "truth", "gridLo", "gridHi", "batchSize") + ODE_ARGS,
                    {"batchSize": pts.shape[0]})
    raw = {k: v for k, v in sub.raw.items() if k not in ("n", "truth", "gridLo", "gridHi")}
    raw.update({"x": pts.float(), "divergence": "exact", "dequantize": False, "repeats": 1})
    res = _call("likelihood.nll", raw, ctx)
    shape = (n,) if dim == 1 else (n, n)
    true = true_log_prob(data.dataset, pts, dim, data.scale) if truth else None
    return {
        "axes": [a.float() for a in axes],
        "logp": (-res["perSample"]).reshape(shape).float(),
        "trueLogp": true.reshape(shape).float() if true is not None else None,
        "nfe": int(res["nfe"]),
        "seconds": float(res["seconds"]),
    }


@op("toy.nll")
def toy_nll(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Mean NLL (nats) of fresh test samples under a toy model by the ODE, beside the entropy floor."""
    lm, data = _toy_model(args, ctx)
    sub = _delegate(args, ("model", "weights", "n", "seed", "batchSize") + ODE_ARGS, {"n": 2000})
    sub.raw.update({"divergence": "exact", "dequantize": False, "repeats": 1})
    res = _call("likelihood.nll", sub.raw, ctx)
    floor, how = entropy_floor(data.dataset, data.dim, data.scale)
    return {
        "dataset": data.dataset,
        "nll": float(res["nll"]),
        "stderr": float(res["nllStderr"]),
        "floor": floor,
        "floorMethod": how,
        "gap": float(res["nll"]) - floor if floor is not None else None,
        "n": int(res["n"]),
        "nfe": int(res["nfe"]),
        "solver": res["solver"],
        "seconds": float(res["seconds"]),
        "step": int(res["step"]),
    }


@op("toy.samples")
def toy_samples(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Samples of a toy model by the probability-flow ODE or the PC sampler (the numerics area's
    ``sample`` op, restricted to toy models)."""
    _toy_model(args, ctx)
    sub = _delegate(args, ("model", "weights", "n", "seed", "method", "eps", "noiseRemoval") + ODE_KEYS + PC_KEYS,
                    {"n": 2000})
    return _call("sample", sub.raw, ctx)


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

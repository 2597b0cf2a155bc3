"""Ops of the toy main job: toy data, a model's ODE log-density on a grid (with its mass on the
data's support), its NLL of fresh test points beside the entropy floor, samples, the mechanism
curves along t, and the report's pictures (``plot.toy``, ``plot.lines``).

Thin adapters over the generated argument types (schemas: ``src/protocol/ops/toy.ts``, where every
static default lives): each fills only the defaults that depend on the model (its experiment's ODE
and sampling settings), then makes one call into ``fpdiff.toys`` (truth,
data), ``fpdiff.diagnostics`` (the ODE measurements and curves), ``fpdiff.sampling`` or
``fpdiff.plots``; no toy op calls another op. Long ops emit throttled ``progress {done, total, nfe,
elapsedSeconds}`` events and honour cancellation.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from .. import config as C
from .. import toys
from .._generated import types as T
from ..data import step_seed
from . import OpContext, bad_request, op
from .progress import Progress
from .state import LoadedModel, get_model, pick, sampler_options

Tensor = torch.Tensor

STREAM_TEST = 101  # toy.data samples: independent of every training stream
STREAM_NOISE = 202  # sampler noise and the curves' perturbations
# ---------------------------------------------------------------------------------------------
# Helpers


def _toy_model(ctx: OpContext, handle: str) -> tuple[LoadedModel, C.ToyDataConfig]:
    lm = get_model(ctx.state, handle)
    data = lm.experiment.data
    if not isinstance(data, C.ToyDataConfig):
        raise bad_request("args.model", f"{lm.handle!r} was trained on {data.kind} data; toy ops need a toy model")
    return lm, data


def _ode(args: Any, lm: LoadedModel) -> dict[str, Any]:
    """ODE settings, absent ones from the experiment's eval.bpd, as `diagnostics.ode_nll` takes them."""
    bpd = lm.experiment.eval.bpd
    return {"eps": pick(args.eps, bpd.eps), "rtol": pick(args.rtol, bpd.rtol), "atol": pick(args.atol, bpd.atol),
            "method": pick(args.method, bpd.solver), "steps": args.steps, "batch_size": args.batch_size}


def _bound(value: Any, dim: int, field: str) -> Optional[list[float]]:
    """A grid bound: a number for every axis or one per axis, or None."""
    if value is None:
        return None
    vals = list(value) if isinstance(value, (tuple, list)) else [value] * dim
    if len(vals) != dim:
        raise bad_request(field, f"expected a number or {dim} numbers")
    return [float(v) for v in vals]


# ---------------------------------------------------------------------------------------------
# Ops


@op("toy.data")
def toy_data(args: T.ToyDataArgs, ctx: OpContext) -> T.ToyDataResult:
    """n samples of a toy data set (seeded), with its entropy where known."""
    g = torch.Generator().manual_seed(step_seed(args.seed, 0, STREAM_TEST))
    try:
        x = toys.sample_toy(args.dataset, args.n, dim=args.dim, scale=args.scale, generator=g, dtype=torch.float32)
    except ValueError as exc:
        raise bad_request("args.dim", str(exc)) from None
    return T.ToyDataResult(x=x, entropy=toys.toy_entropy(args.dataset, x.shape[1], args.scale))


@op("toy.density")
def toy_density(args: T.ToyDensityArgs, ctx: OpContext) -> T.ToyDensityResult:
    """A toy model's ODE log-density (exact divergence) on a 1-D / 2-D grid, the true one, and the
    model's mass on the data's support (checkerboard)."""
    from ..diagnostics import toy_density as density

    lm, data = _toy_model(ctx, args.model)
    n = args.n
    dim = int(data.dim)
    if dim > 2:
        raise bad_request("args.model", f"the grid density needs 1-D or 2-D data, this model's is {dim}-D")
    lo, hi = _bound(args.grid_lo, dim, "args.gridLo"), _bound(args.grid_hi, dim, "args.gridHi")
    if lo is not None and hi is not None and not all(a < b for a, b in zip(lo, hi)):
        raise bad_request("args.gridLo", "must be below gridHi on every axis")
    progress = Progress(ctx, n**dim)
    try:
        res = density(lm.score_model(args.weights), data.dataset, n, dim=dim, scale=data.scale, lo=lo, hi=hi,
                      truth=args.truth, device=lm.device, callback=progress, **_ode(args, lm))
    except ValueError as exc:  # bounds that leave no grid
        raise bad_request("args.gridLo", str(exc)) from None
    true = res["true_logp"]
    return T.ToyDensityResult(
        axes=tuple(a.float() for a in res["axes"]),
        logp=res["logp"].float(),
        true_logp=true.float() if true is not None else None,
        mass_on_support=res["mass_on_support"],
        mass_in_grid=res["mass_in_grid"],
        nfe=int(res["nfe"]),
        solver=", ".join(res["solvers"]),
        seconds=progress.seconds,
    )


@op("toy.nll")
def toy_nll(args: T.ToyNllArgs, ctx: OpContext) -> T.ToyNllResult:
    """Mean NLL (nats) of fresh test samples under a toy model by the ODE, beside the entropy floor,
    with the per-sample values (same seed → same points for every model: paired comparisons)."""
    from ..diagnostics import toy_nll as nll

    lm, data = _toy_model(ctx, args.model)
    n = args.n
    progress = Progress(ctx, n)
    res = nll(lm.score_model(args.weights), data.dataset, n, seed=args.seed, dim=data.dim,
              scale=data.scale, device=lm.device, callback=progress, **_ode(args, lm))
    floor = res["floor"]
    return T.ToyNllResult(
        dataset=data.dataset,
        nll=res["nll"],
        stderr=res["stderr"],
        floor=floor,
        floor_method=res["floor_method"],
        gap=res["nll"] - floor if floor is not None else None,
        per_sample=res["per_sample"],
        n=n,
        nfe=int(res["nfe"]),
        # "dopri5", or the fallback that had to take over (see likelihood.solve_ode)
        solver=", ".join(res["solvers"]),
        seconds=progress.seconds,
        step=lm.step,
    )


@op("toy.samples")
def toy_samples(args: T.ToySamplesArgs, ctx: OpContext) -> T.ToySamplesResult:
    """Samples of a toy model by the probability-flow ODE or the PC sampler (defaults: the
    experiment's sampling section)."""
    from .. import sampling as S

    lm, data = _toy_model(ctx, args.model)
    # steps always has its zod default here, so it is no ODE-only option to refuse
    method, eps, kw = sampler_options(args, lm, steps=args.steps, ode_only=("solver", "rtol", "atol"))
    n = args.n
    gen = torch.Generator(device=lm.device).manual_seed(step_seed(args.seed, 0, STREAM_NOISE))
    progress = Progress(ctx, n)
    fn = S.pc_sample if method == "pc" else S.ode_sample
    res = fn(lm.score_model(args.weights), (n, data.dim), eps=eps, generator=gen, device=lm.device,
             dtype=torch.float32, callback=progress, **kw)
    return T.ToySamplesResult(x=res.x.detach().cpu().float(), nfe=int(res.nfe), method=method, seconds=progress.seconds)


@op("toy.diagnostics")
def toy_diagnostics(args: T.ToyDiagnosticsArgs, ctx: OpContext) -> T.ToyDiagnosticsResult:
    """The mechanism curves of a toy model along t: the absolute score-FPE residual beside ‖∂t s‖
    and ‖∇φ̃‖; where the data score is closed-form, ‖std·s‖ beside the truth's, the score error
    and the ScoreODE's Fisher divergence (FP-Diffusion Fig. 1/3; high-order DSM Fig. 3)."""
    from ..diagnostics import toy_curves

    lm, data = _toy_model(ctx, args.model)
    n, seed = args.n, args.seed
    gen = torch.Generator(device=lm.device).manual_seed(step_seed(seed, 0, STREAM_NOISE))
    ts = list(args.t)
    closed_form = toys.toy_law(data.dataset, data.dim, data.scale) is not None  # two passes per t: residual, Fisher
    progress = Progress(ctx, len(ts) * (2 if closed_form else 1))
    curves = toy_curves(lm.score_model(args.weights), data.dataset, n, ts, seed=seed, dim=data.dim, scale=data.scale,
                        device=lm.device, ode=args.ode, rtol=args.rtol, atol=args.atol, generator=gen, callback=progress.at)

    def opt(key: str) -> Optional[tuple[float, ...]]:
        return tuple(curves[key]) if key in curves else None

    return T.ToyDiagnosticsResult(
        t=tuple(curves["t"]), residual=tuple(curves["residual"]), dt_score=tuple(curves["dt_score"]),
        grad_phi=tuple(curves["grad_phi"]), sigma_score=opt("sigma_score"), sigma_score_true=opt("sigma_score_true"),
        score_error=opt("fisher_model"), fisher_ode=opt("fisher_ode"), n=n, seconds=progress.seconds,
    )


# ---------------------------------------------------------------------------------------------
# Pictures


def _panel(p: Any) -> Any:
    """A generated panel → its `fpdiff.plots` panel."""
    from .. import plots as PL

    title = p.title or ""
    if isinstance(p, T.DensityPanel):
        if len(p.axes) != 2:
            raise ValueError(f"density panel {title!r}: needs axes [x, y]")
        return PL.DensityPanel(p.axes[0], p.axes[1], p.logp, title=title, log_scale=p.log_scale, vmax=p.vmax)
    if isinstance(p, T.SamplesPanel):
        return PL.SamplesPanel(p.x, title=title, xlim=p.xlim, ylim=p.ylim, histogram=p.histogram)
    if isinstance(p, T.CurvesPanel):
        return PL.CurvesPanel(p.x, [(c.label, c.logp) for c in p.curves], samples=p.samples, title=title)
    if isinstance(p, T.LinesPanel):
        series = [{"label": s.label, "x": s.x, "y": s.y, "yerr": s.yerr, "style": s.style, "color": s.color} for s in p.series]
        hline = {"y": p.hline.y, "label": p.hline.label} if p.hline is not None else None
        return PL.LinesPanel(series, title=title, xlabel=p.xlabel or "", ylabel=p.ylabel or "", logx=p.logx,
                             logy=p.logy, hline=hline)
    return PL.BarsPanel(list(p.labels), p.values, p.errors, title=title, ylabel=p.ylabel or "")


@op("plot.toy")
def plot_toy(args: T.PlotToyArgs, ctx: OpContext) -> T.SavedPng:
    """A PNG of toy panels side by side: density heat-maps, sample scatters, 1-D density curves,
    lines along t, bars with error bars."""
    from .. import plots as PL

    try:
        res = PL.panels_figure(args.path, [_panel(p) for p in args.panels], title=args.title, columns=args.columns,
                               shared_scale=args.shared_scale, panel_size=args.panel_size)
    except (ValueError, TypeError) as exc:
        raise bad_request("args.panels", str(exc)) from None
    return T.SavedPng(path=res["path"], bytes=res["bytes"])


@op("plot.lines")
def plot_lines(args: T.PlotLinesArgs, ctx: OpContext) -> T.SavedPng:
    """A PNG line plot (ablations): series of (x, y[, yerr]) and an optional reference line."""
    from .. import plots as PL

    series = [{"label": s.label, "x": s.x, "y": s.y, **({"yerr": s.yerr} if s.yerr is not None else {})} for s in args.series]
    hline = {"y": args.hline.y, "label": args.hline.label} if args.hline is not None else None
    try:
        res = PL.line_plot(args.path, series, hline=hline, title=args.title, xlabel=args.xlabel or "",
                           ylabel=args.ylabel or "", logx=args.logx, logy=args.logy)
    except (ValueError, TypeError) as exc:
        raise bad_request("args.series", str(exc)) from None
    return T.SavedPng(path=res["path"], bytes=res["bytes"])

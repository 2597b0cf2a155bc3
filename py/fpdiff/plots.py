"""Figures for reports, as PNG files (matplotlib's object API on the Agg canvas: no pyplot, no
display, no global figure state — safe in the worker).

- :func:`panels_figure`: a row (or grid) of toy panels — 2-D density heat-maps (model beside
  truth), 2-D sample scatters, 1-D density curves, line plots (curves along t) and bar charts
  with error bars (paired differences);
- :func:`line_plot`: ablation lines (x → y per series, optional error bars and a reference line).

Inputs are tensors, NumPy arrays or lists. Densities are given as log-densities (−inf allowed,
e.g. outside the checkerboard's squares) and drawn as densities. Files are written atomically.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from .files import atomic_path

__all__ = ["DensityPanel", "SamplesPanel", "CurvesPanel", "LinesPanel", "BarsPanel", "panels_figure", "line_plot",
           "to_numpy"]


def to_numpy(v: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return v.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(v, dtype=np.float64)


@dataclass
class DensityPanel:
    """exp(logp) on a grid: logp [ny, nx] with logp[i, j] at (x[j], y[i])."""

    x: Any
    y: Any
    logp: Any
    title: str = ""
    log_scale: bool = False  # draw log-density instead of density
    vmax: Optional[float] = None


@dataclass
class SamplesPanel:
    """A scatter of 2-D points [n, 2] (a 2-D histogram when there are many)."""

    points: Any
    title: str = ""
    xlim: Optional[Sequence[float]] = None
    ylim: Optional[Sequence[float]] = None
    histogram: Optional[bool] = None  # None: histogram above 20 000 points


@dataclass
class CurvesPanel:
    """1-D densities: curves of exp(logp) over x, optionally with a histogram of samples."""

    x: Any
    curves: list = field(default_factory=list)  # [(label, logp)]
    samples: Any = None
    title: str = ""


@dataclass
class LinesPanel:
    """Series ``{label?, x, y, yerr?, style? ("-", "--", ":", "-."), color? (a matplotlib colour)}``
    on shared axes; non-positive values are left out on a log axis."""

    series: list = field(default_factory=list)
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    logx: bool = False
    logy: bool = False
    hline: Optional[dict] = None  # {y, label?}


@dataclass
class BarsPanel:
    """One bar per label with an error bar (e.g. paired NLL differences ± s.e.), a line at 0."""

    labels: list = field(default_factory=list)
    values: Any = None
    errors: Any = None
    title: str = ""
    ylabel: str = ""


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str) -> dict:
    path = os.path.abspath(os.fspath(path))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return {"path": path, "bytes": os.path.getsize(path)}


def _edges(c: np.ndarray) -> np.ndarray:
    """Cell edges for cell centres c (uniform or not)."""
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _draw_density(ax: Any, p: DensityPanel, vmax: Optional[float]) -> Any:
    x, y, logp = to_numpy(p.x), to_numpy(p.y), to_numpy(p.logp)
    if logp.shape != (y.size, x.size):
        raise ValueError(f"density panel {p.title!r}: logp has shape {list(logp.shape)}, expected [{y.size}, {x.size}] (rows follow y)")
    if p.log_scale:
        z = np.where(np.isfinite(logp), logp, np.nan)
        finite = z[np.isfinite(z)]
        lo = np.percentile(finite, 1) if finite.size else None
        mesh = ax.pcolormesh(_edges(x), _edges(y), z, cmap="viridis", vmin=lo, shading="flat")
    else:
        z = np.exp(np.where(np.isnan(logp), -np.inf, logp))
        mesh = ax.pcolormesh(_edges(x), _edges(y), z, cmap="viridis", vmin=0.0, vmax=vmax, shading="flat")
    ax.set_aspect("equal")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    return mesh


def _draw_samples(ax: Any, p: SamplesPanel) -> None:
    pts = to_numpy(p.points)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"samples panel {p.title!r}: expected points [n, 2], got {list(pts.shape)}")
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    hist = p.histogram if p.histogram is not None else pts.shape[0] > 20000
    rng = None
    if p.xlim is not None and p.ylim is not None:
        rng = [list(p.xlim), list(p.ylim)]
    if hist:
        ax.hist2d(pts[:, 0], pts[:, 1], bins=200, range=rng, cmap="viridis")
    else:
        size = max(0.5, min(8.0, 4000.0 / max(1, pts.shape[0])))
        ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=0.6, linewidths=0, color="#1f4e79")
    if p.xlim is not None:
        ax.set_xlim(*p.xlim)
    if p.ylim is not None:
        ax.set_ylim(*p.ylim)
    ax.set_aspect("equal")


def _draw_curves(ax: Any, p: CurvesPanel) -> None:
    x = to_numpy(p.x).reshape(-1)
    if p.samples is not None:
        s = to_numpy(p.samples).reshape(-1)
        s = s[np.isfinite(s)]
        ax.hist(s, bins=min(200, max(10, s.size // 50)), range=(x[0], x[-1]), density=True, alpha=0.3,
                color="grey", label="samples")
    for label, logp in p.curves:
        lp = to_numpy(logp).reshape(-1)
        if lp.size != x.size:
            raise ValueError(f"curve {label!r}: {lp.size} values for {x.size} grid points")
        ax.plot(x, np.exp(lp), label=str(label), lw=1.5)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def _draw_lines(ax: Any, p: LinesPanel) -> None:
    if not p.series:
        raise ValueError(f"lines panel {p.title!r}: no series")
    labelled = False
    for s in p.series:
        x = to_numpy(s["x"]).reshape(-1)
        y = to_numpy(s["y"]).reshape(-1)
        if x.size != y.size:
            raise ValueError(f"lines panel {p.title!r}, series {s.get('label')!r}: {x.size} x values but {y.size} y values")
        keep = np.isfinite(x) & np.isfinite(y)
        if p.logx:
            keep &= x > 0
        if p.logy:
            keep &= y > 0
        kw = {"ls": s.get("style") or "-", "marker": "o", "ms": 3, "lw": 1.4, "label": s.get("label")}
        if s.get("color"):
            kw["color"] = s["color"]
        yerr = s.get("yerr")
        if yerr is not None:
            ax.errorbar(x[keep], y[keep], yerr=to_numpy(yerr).reshape(-1)[keep], capsize=3, **kw)
        else:
            ax.plot(x[keep], y[keep], **kw)
        labelled = labelled or bool(s.get("label"))
    if p.hline is not None:
        ax.axhline(float(p.hline["y"]), ls="--", color="k", lw=1, label=p.hline.get("label"))
        labelled = labelled or bool(p.hline.get("label"))
    if p.logx:
        ax.set_xscale("log")
    if p.logy:
        ax.set_yscale("log")
    ax.set_xlabel(p.xlabel, fontsize=8)
    ax.set_ylabel(p.ylabel, fontsize=8)
    if labelled:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _draw_bars(ax: Any, p: BarsPanel) -> None:
    v = to_numpy(p.values).reshape(-1)
    e = to_numpy(p.errors).reshape(-1) if p.errors is not None else None
    if v.size != len(p.labels) or (e is not None and e.size != v.size):
        raise ValueError(f"bars panel {p.title!r}: {len(p.labels)} labels, {v.size} values"
                         + (f", {e.size} errors" if e is not None else ""))
    pos = np.arange(v.size)
    ax.bar(pos, v, yerr=e, capsize=4, color=[f"C{i}" for i in range(v.size)], alpha=0.8)
    ax.axhline(0.0, color="k", lw=1)
    ax.set_xticks(pos)
    ax.set_xticklabels([str(a) for a in p.labels], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(p.ylabel, fontsize=8)
    ax.grid(alpha=0.3, axis="y")


def panels_figure(path: str, panels: Sequence[Any], *, title: Optional[str] = None,
                  columns: Optional[int] = None, panel_size: float = 3.2,
                  shared_scale: bool = True) -> dict:
    """Draw the panels side by side (``columns`` per row) and write a PNG; returns {path, bytes}.

    With ``shared_scale`` every density panel uses the same colour scale (the largest density of
    all of them), so a model and the truth are compared on one scale."""
    if not panels:
        raise ValueError("a figure needs at least one panel")
    n = len(panels)
    cols = max(1, min(int(columns or n), n))
    rows = math.ceil(n / cols)
    fig = _figure(panel_size * cols + 0.6, panel_size * rows + (0.5 if title else 0.1))
    vmax = None
    if shared_scale:
        peaks = []
        for p in panels:
            if isinstance(p, DensityPanel) and not p.log_scale:
                lp = to_numpy(p.logp)
                lp = lp[np.isfinite(lp)]
                if lp.size:
                    peaks.append(float(np.exp(np.percentile(lp, 99.5))))
        vmax = max(peaks) if peaks else None
    for i, p in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        if isinstance(p, DensityPanel):
            mesh = _draw_density(ax, p, p.vmax if p.vmax is not None else vmax)
            cb = fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04)
            cb.ax.tick_params(labelsize=7)
        elif isinstance(p, SamplesPanel):
            _draw_samples(ax, p)
        elif isinstance(p, CurvesPanel):
            _draw_curves(ax, p)
        elif isinstance(p, LinesPanel):
            _draw_lines(ax, p)
        elif isinstance(p, BarsPanel):
            _draw_bars(ax, p)
        else:
            raise TypeError(f"unknown panel type {type(p).__name__}")
        if p.title:
            ax.set_title(p.title, fontsize=10)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def line_plot(path: str, series: Sequence[dict], *, title: Optional[str] = None, xlabel: str = "",
              ylabel: str = "", logx: bool = False, logy: bool = False,
              hline: Optional[dict] = None, size: Sequence[float] = (6.0, 4.0)) -> dict:
    """Lines ``{label, x, y, yerr?}`` (markers at the points); ``hline`` {y, label?} draws a dashed
    reference (e.g. the entropy floor). Returns {path, bytes}."""
    if not series:
        raise ValueError("a line plot needs at least one series")
    fig = _figure(float(size[0]), float(size[1]))
    ax = fig.add_subplot(1, 1, 1)
    for s in series:
        x = to_numpy(s["x"]).reshape(-1)
        y = to_numpy(s["y"]).reshape(-1)
        if x.size != y.size:
            raise ValueError(f"series {s.get('label')!r}: {x.size} x values but {y.size} y values")
        yerr = s.get("yerr")
        if yerr is not None:
            ax.errorbar(x, y, yerr=to_numpy(yerr).reshape(-1), marker="o", ms=4, capsize=3, label=s.get("label"))
        else:
            ax.plot(x, y, marker="o", ms=4, label=s.get("label"))
    if hline is not None:
        ax.axhline(float(hline["y"]), ls="--", color="k", lw=1, label=hline.get("label"))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(s.get("label") for s in series) or (hline and hline.get("label")):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)

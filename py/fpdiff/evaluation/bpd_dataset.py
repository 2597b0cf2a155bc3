"""Bits/dim over a whole data set by the probability-flow ODE (Song et al. 2021, §4.3, App. D.2;
docs/contracts.md "eval.bpd_dataset").

Each image's NLL comes from :func:`fpdiff.likelihood.bits_per_dim` (the probability-flow ODE with
a Hutchinson divergence, one probe held for the whole trajectory, as the originals). The data set
is cut into batches; batch b of repeat r is one *unit* whose dequantisation noise and probe come
from (seed, unit) alone, so a result does not depend on the number of ranks, on the batch order
or on interruptions. Units are split plainly over the ranks (an adaptive solver is never wrapped
in DDP) and logged as they finish (``evaluation.shards``): Ctrl-C and re-running continues.

Summary (``summarize``): per repeat the mean bits/dim over the images and its standard error; the
overall mean is the mean over repeats of the per-image values, with the standard error over
images of each image's mean over repeats (the repeats of one image are not independent of it);
the NFE distribution over units (one adaptive solve each). bpd = −log p(x̃)/(D ln 2) + offset,
offset = 8 for data in [0, 1] and 7 for [−1, 1] (= 7 − inverse_scaler(−1), Score SDE's
convention), where x̃ is the dequantised image (x·255 + u)/256, u ~ U[0, 1) — the high-order
paper's protocol; without dequantisation x̃ = x (Score SDE's README figures).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

import numpy as np
import torch

from .. import distributed as D
from ..data import step_seed
from ..likelihood import bits_per_dim, bpd_offset
from ..score import ScoreModel
from .images import model_space
from .shards import Unit, WorkDir, make_units, run_units

Tensor = torch.Tensor

STREAM_BPD = 21
FIXED_STEPS = 100


def unit_generator(seed: int, unit: int, device: Any) -> torch.Generator:
    """The generator of unit ``unit`` (dequantisation noise, then the probe)."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, unit, STREAM_BPD))


def settings(*, dataset: str, split: str, n: int, repeats: int, batch_size: int, solver: str, rtol: float,
             atol: float, eps: float, probe: str, dequantize: bool, centered: bool, seed: int,
             model: dict, steps: int = FIXED_STEPS) -> dict:
    return {"dataset": dataset, "split": split, "n": int(n), "repeats": int(repeats), "batchSize": int(batch_size),
            "solver": solver, "rtol": float(rtol), "atol": float(atol), "eps": float(eps), "probe": probe,
            "steps": int(steps) if solver != "dopri5" else None,
            "divergence": "hutchinson", "dequantize": bool(dequantize), "centered": bool(centered),
            "seed": int(seed), "offset": bpd_offset(centered), "model": model}


def dataset_bpd(model: ScoreModel, images: Tensor, wd: WorkDir, *, repeats: int = 1, batch_size: int = 128,
                solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, eps: float = 1e-5,
                probe: str = "rademacher", dequantize: bool = True, centered: bool = False, seed: int = 0,
                steps: int = FIXED_STEPS, device: Any = "cpu", d: Optional[D.Dist] = None, should_stop: Callable[[], bool] = lambda: False,
                on_records: Callable[[list[dict]], None] = lambda r: None,
                on_nfe: Optional[Callable[[int, Any], None]] = None) -> dict:
    """bits/dim of every image of ``images`` (uint8 [N, C, H, W]), ``repeats`` times; returns the
    summary (:func:`summarize`). Raises ``ShardsStopped`` when stopped (results kept in ``wd``).
    ``steps``: fixed steps over [eps, 1] for rk4 / euler (dopri5 adapts its own)."""
    n = images.shape[0]
    units = make_units(n, batch_size, repeats)
    options = None if solver == "dopri5" else {"step_size": (1.0 - float(eps)) / int(steps)}

    def compute(u: Unit) -> tuple[dict, None]:
        t0 = time.perf_counter()
        x = model_space(images[u.lo:u.hi], centered, device)
        res = bits_per_dim(model, x, centered=centered, dequantize=dequantize, repeats=1,
                           generator=unit_generator(seed, u.index, device), eps=eps, rtol=rtol, atol=atol,
                           method=solver, divergence="hutchinson", probe=probe, options=options, callback=on_nfe)
        return ({"bpd": [float(v) for v in res.per_sample[0].cpu()], "nfe": int(res.nfe[0]),
                 "solver": str(res.solvers[0]) if res.solvers else solver, "seconds": time.perf_counter() - t0}, None)

    run_units(units, compute, wd, d, should_stop=should_stop, on_records=on_records)
    if d is not None and not d.is_main:
        return {}
    return summarize(wd.finished(), n=n, repeats=repeats, settings=wd.settings)


def running(records: list[dict]) -> dict:
    """Images done, running mean ± s.e. of the per-image bits/dim, mean NFE (for the progress line)."""
    vals = np.array([v for r in records for v in r["bpd"]], dtype=np.float64)
    if vals.size == 0:
        return {"images": 0, "bpd": None, "stderr": None, "nfe": None}
    se = float(vals.std(ddof=1) / math.sqrt(vals.size)) if vals.size > 1 else None
    return {"images": int(vals.size), "bpd": float(vals.mean()), "stderr": se,
            "nfe": float(np.mean([r["nfe"] for r in records]))}


def summarize(records: dict[int, dict], *, n: int, repeats: int, settings: dict) -> dict:
    """The result JSON (see the module docstring)."""
    per = np.full((repeats, n), np.nan)
    nfes, solvers, seconds = [], {}, 0.0
    for rec in records.values():
        per[int(rec["repeat"]), int(rec["lo"]):int(rec["hi"])] = rec["bpd"]
        nfes.append(int(rec["nfe"]))
        solvers[rec["solver"]] = solvers.get(rec["solver"], 0) + 1
        seconds += float(rec.get("seconds", 0.0))
    complete = bool(np.isfinite(per).all())
    reps = []
    for r in range(repeats):
        row = per[r][np.isfinite(per[r])]
        reps.append({"repeat": r, "images": int(row.size), "bpd": float(row.mean()) if row.size else None,
                     "stderr": float(row.std(ddof=1) / math.sqrt(row.size)) if row.size > 1 else None})
    img_mean = np.nanmean(per, axis=0) if complete else None
    nfe_arr = np.array(nfes, dtype=np.float64)
    return {
        "complete": complete,
        "images": int(n),
        "repeats": reps,
        "bpd": float(img_mean.mean()) if img_mean is not None else None,
        "stderr": float(img_mean.std(ddof=1) / math.sqrt(n)) if img_mean is not None and n > 1 else None,
        "nfe": {"units": len(nfes), "mean": float(nfe_arr.mean()) if nfes else None,
                "min": int(nfe_arr.min()) if nfes else None, "median": float(np.median(nfe_arr)) if nfes else None,
                "max": int(nfe_arr.max()) if nfes else None,
                "histogram": {str(k): int(v) for k, v in zip(*np.unique(nfe_arr.astype(int), return_counts=True))} if nfes else {}},
        "solvers": solvers,
        "computeSeconds": seconds,
        "settings": settings,
        "offsetConvention": ("bpd = -log p(x~) / (D ln 2) + offset; offset = 7 - inverse_scaler(-1) "
                             "(8 for data in [0,1], 7 for [-1,1]); x~ = (255 x + u)/256, u ~ U[0,1) when dequantize"),
    }

"""Sampling at scale: n samples in units of ``batch_size``, split plainly over the ranks, each
unit drawn from its own generator (seed, unit) — so the samples are the same for a seed whatever
the number of ranks or interruptions — and logged as ``units/<i>.npz`` shards (uint8 NHWC images
in [0, 255], as Score SDE saves samples; float model-space points for toys). With an Inception
network each unit also stores its pool3 features and logits (``eval.fid``)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np
import torch

from .. import distributed as D
from ..data import inverse_scaler, step_seed
from ..score import ScoreModel
from . import images as I
from .sampler import SamplerSpec, draw
from .shards import Unit, WorkDir, make_units, run_units

STREAM_SAMPLES = 31


def unit_generator(seed: int, unit: int, device: Any) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(step_seed(seed, unit, STREAM_SAMPLES))


def sample_units(model: ScoreModel, spec: SamplerSpec, shape: tuple[int, ...], wd: WorkDir, *, n: int,
                 batch_size: int, seed: int, device: Any, data_cfg: Any = None, image: bool = True,
                 keep_samples: bool = True, inception: Any = None, d: Optional[D.Dist] = None,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_records: Callable[[list[dict]], None] = lambda r: None) -> dict[int, dict]:
    """Draw the unfinished units; returns the records by unit (rank 0; {} elsewhere)."""

    def compute(u: Unit) -> tuple[dict, dict]:
        t0 = time.perf_counter()
        res = draw(model, spec, u.hi - u.lo, shape, generator=unit_generator(seed, u.index, device), device=device)
        arrays: dict[str, np.ndarray] = {}
        if image:
            x8 = I.to_uint8(inverse_scaler(data_cfg)(res.x).clamp(0, 1))
            if keep_samples:
                arrays["samples"] = x8.permute(0, 2, 3, 1).numpy()
            if inception is not None:
                pool, logits = inception(x8)
                arrays["pool_3"] = pool.cpu().numpy().astype(np.float32)
                arrays["logits"] = logits.cpu().numpy().astype(np.float32)
        else:
            arrays["samples"] = res.x.detach().cpu().numpy()
        return {"nfe": int(res.nfe), "seconds": time.perf_counter() - t0}, arrays

    return run_units(make_units(n, batch_size), compute, wd, d, should_stop=should_stop, on_records=on_records)


def collect(wd: WorkDir, key: str, records: dict[int, dict]) -> np.ndarray:
    """The ``key`` arrays of every unit, in unit order."""
    return np.concatenate([wd.load_arrays(i)[key] for i in sorted(records)])


def nfe_summary(records: dict[int, dict]) -> dict:
    v = np.array([r["nfe"] for r in records.values()], dtype=np.float64)
    return {"units": int(v.size), "mean": float(v.mean()) if v.size else None, "min": int(v.min()) if v.size else None,
            "max": int(v.max()) if v.size else None}

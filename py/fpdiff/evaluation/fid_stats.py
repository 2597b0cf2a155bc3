"""Reference statistics of a data set for FID / KID: the pool3 activations of every image of a
split (uint8, as stored), computed in units split over the ranks and logged, so an interrupted
run continues; then written as ``mu``, ``sigma``, ``n`` and ``pool_3`` (``fid.save_stats``)."""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch

from .. import distributed as D
from .fid import FIDInception, save_stats
from .shards import Unit, WorkDir, make_units, run_units


def dataset_stats(images: torch.Tensor, net: FIDInception, wd: WorkDir, out: str, *, batch_size: int = 500,
                  keep_pool: bool = True, d: Optional[D.Dist] = None, meta: Optional[dict] = None,
                  should_stop: Callable[[], bool] = lambda: False,
                  on_records: Callable[[list[dict]], None] = lambda r: None) -> Optional[dict]:
    """Features of uint8 ``images`` [N, 3, H, W] → the stats file ``out`` (rank 0 writes it)."""

    def compute(u: Unit) -> tuple[dict, dict]:
        t0 = time.perf_counter()
        pool, _ = net(images[u.lo:u.hi])
        return {"seconds": time.perf_counter() - t0}, {"pool_3": pool.cpu().numpy().astype(np.float32)}

    records = run_units(make_units(images.shape[0], batch_size), compute, wd, d, should_stop=should_stop,
                        on_records=on_records)
    if d is not None and not d.is_main:
        return None
    pool = np.concatenate([wd.load_arrays(i)["pool_3"] for i in sorted(records)])
    return save_stats(out, pool, keep_pool=keep_pool, meta=meta)

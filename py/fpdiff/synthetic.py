"""Synthetic data sets in the official file formats, so that fine-tuning and bits/dim can be
exercised end to end (tests, the small checkpoint fixtures, smoke runs of an ablation) where the real
data cannot be downloaded."""

from __future__ import annotations

import os
import pickle

import numpy as np

from .data import CIFAR10_TEST, CIFAR10_TRAIN
from .files import atomic_path


def write_synthetic_cifar10(path: str, per_batch: int, seed: int) -> tuple[str, list[str]]:
    """``data_batch_1..5`` and ``test_batch`` of smooth random 32×32 RGB images (uint8 [N, 3072],
    R, G, B planes) with labels, pickled as the python version of CIFAR-10 is."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    files = []
    for name in (*CIFAR10_TRAIN, *CIFAR10_TEST):
        # low-frequency colour fields: closer to natural images than white noise, cheap to make
        coef = rng.normal(size=(per_batch, 3, 4))
        img = (coef[..., 0, None, None] + coef[..., 1, None, None] * xx + coef[..., 2, None, None] * yy
               + coef[..., 3, None, None] * np.sin(6 * xx * yy))
        img = 127.5 + 40.0 * img + rng.normal(scale=8.0, size=img.shape)
        data = np.clip(img, 0, 255).astype(np.uint8).reshape(per_batch, 3 * 32 * 32)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        target = os.path.join(path, name)
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, fh, protocol=2)
        files.append(target)
    return os.path.abspath(path), files

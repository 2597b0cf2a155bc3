"""Images of samples: a uint8 grid as Score SDE saves it (``torchvision.utils.make_grid`` with
√n columns and 2-pixel padding), written as a PNG, and the uint8 quantisation the originals use
before saving or feeding Inception (``(x · 255).clip(0, 255).astype(uint8)`` — truncation)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..files import atomic_path

Tensor = torch.Tensor


def model_space(images: Tensor, centered: bool, device=None) -> Tensor:
    """uint8 [N, C, H, W] → float32 in [0, 1], or [−1, 1] when ``centered`` (no flip, no noise)."""
    x = images.to(device=device, dtype=torch.float32) / 255.0
    return 2.0 * x - 1.0 if centered else x


def to_uint8(x01: Tensor) -> Tensor:
    """[N, C, H, W] in [0, 1] → uint8 by truncation of x·255 (as Score SDE's ``astype(np.uint8)``)."""
    return (x01.detach().float().cpu() * 255.0).clamp(0, 255).to(torch.uint8)


def grid(images: Tensor, nrow: int | None = None) -> np.ndarray:
    """uint8 [N, C, H, W] → uint8 [H', W', C] grid (√N columns, padding 2)."""
    from torchvision.utils import make_grid

    n = images.shape[0]
    g = make_grid(images, nrow=nrow or max(1, int(math.sqrt(n))), padding=2)
    return g.permute(1, 2, 0).contiguous().numpy()


def save_png(path: str, image_hwc: np.ndarray) -> dict:
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    arr = image_hwc[..., 0] if image_hwc.shape[-1] == 1 else image_hwc
    with atomic_path(path, suffix=".tmp.png") as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return {"path": os.path.abspath(path), "bytes": os.path.getsize(path)}

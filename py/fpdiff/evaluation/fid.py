"""FID, Inception score and KID without TensorFlow.

Features: the 2015-12-05 TensorFlow Inception graph that TF-GAN (and so Score SDE) evaluates with,
as ported to PyTorch by pytorch-fid (``pytorch_fid.inception.InceptionV3``, weights
``pt_inception-2015-12-05-6726825d.pth``): pool3 activations [N, 2048] for FID and KID, and the
1008-way logits (its ``fc`` layer) for the Inception score. Images enter as Score SDE feeds them:
uint8 (x·255 truncated), then resized to 299×299 bilinearly and scaled to [−1, 1]. The resize is
TF 1.x's ``resize_bilinear`` without half-pixel centres (what TF-GAN ran) by default, or
PyTorch's half-pixel bilinear (what pytorch-fid does) with ``resize="pytorch"``; they differ by
under 0.5 % in the features.

Metrics (all in float64):
- FID = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{½} Σ₂ Σ₁^{½})^{½}) (Heusel et al. 2017);
- IS = exp E_x KL(p(y|x) ‖ p(y)) over all samples (TF-GAN's ``classifier_score_from_logits``, as
  Score SDE reports it), and over 10 splits (mean ± std, the common convention);
- KID = unbiased MMD² with the kernel k(a, b) = (a·b/d + 1)³ (Bińkowski et al. 2018), averaged
  over blocks of at most 1024 rows as TF-GAN's ``kernel_classifier_distance_from_activations``.

Reference statistics: Score SDE's ``cifar10_stats.npz`` / ``imagenet32_stats.npz`` hold the
data's pool3 activations under ``pool_3`` (FID and KID); pytorch-fid's files hold ``mu`` and
``sigma`` (FID only). :func:`save_stats` writes both forms.

The weights cannot be downloaded here: :func:`find_inception` looks where torch.hub and
pytorch-fid keep them and at ``FPD_INCEPTION``, and otherwise says which file to fetch.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
RESIZES = ("tf1", "pytorch")


class InceptionMissing(FileNotFoundError):
    """The Inception weights are not on this machine."""


def _candidates() -> list[str]:
    out = []
    try:
        out.append(os.path.join(torch.hub.get_dir(), "checkpoints", WEIGHTS_FILE))
    except Exception:  # noqa: BLE001 - an odd TORCH_HOME must not hide the other places
        pass
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.join(home, ".cache"))
    out += [os.path.join(xdg, "torch", "hub", "checkpoints", WEIGHTS_FILE),
            os.path.join(home, ".cache", "torch", "hub", "checkpoints", WEIGHTS_FILE)]
    return list(dict.fromkeys(out))


def find_inception(explicit: Optional[str] = None) -> str:
    """The weights file: ``explicit`` (``--inception``), ``FPD_INCEPTION``, or torch.hub's cache."""
    for path, what in ((explicit, "--inception"), (os.environ.get("FPD_INCEPTION"), "FPD_INCEPTION")):
        if path:
            if not os.path.isfile(path):
                raise InceptionMissing(f"{what} names {path}, which does not exist")
            return os.path.abspath(path)
    looked = _candidates()
    for path in looked:
        if os.path.isfile(path):
            return path
    raise InceptionMissing(
        f"the Inception weights {WEIGHTS_FILE} (pytorch-fid's port of TF Inception 2015-12-05, 91 MB) were not found; "
        f"looked in {', '.join(looked)}. This machine cannot download them: fetch {WEIGHTS_URL} elsewhere, copy it "
        f"here, and pass --inception <file> or set FPD_INCEPTION=<file> (or put it in {looked[0]})")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights(path: str) -> tuple[dict, dict]:
    """The state dict of a weights file (read by fpdiff's restricted unpickler) and what it is:
    ``{path, sha256, verified}`` (verified: the sha256 starts with the official file's prefix)."""
    from ..checkpoints import safe_torch_load

    sd, _report = safe_torch_load(path)
    if not isinstance(sd, dict) or "fc.weight" not in sd:
        raise ValueError(f"{path}: not an Inception state dict (no fc.weight)")
    digest = _sha256(path)
    return sd, {"path": os.path.abspath(path), "sha256": digest, "verified": digest.startswith(WEIGHTS_SHA256_PREFIX)}


def random_weights(seed: int = 0) -> dict:
    """A state dict of the same network with random weights (tests, shapes, throughput)."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    return net.state_dict()


def resize_tf1(x: Tensor, size: int = 299) -> Tensor:
    """TF 1.x ``resize_bilinear(align_corners=False)``: source coordinate = dst · (in/out), no
    half-pixel offset, clamped at the last row/column. x: float [B, C, H, W]."""
    def axis(n_in: int) -> tuple[Tensor, Tensor, Tensor]:
        src = torch.arange(size, dtype=torch.float64, device=x.device) * (n_in / size)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0, i1, (src - i0.double()).to(x.dtype)

    y0, y1, fy = axis(x.shape[-2])
    x0, x1, fx = axis(x.shape[-1])
    top = x[..., y0, :] * (1 - fy)[:, None] + x[..., y1, :] * fy[:, None]
    return top[..., x0] * (1 - fx) + top[..., x1] * fx


class FIDInception(nn.Module):
    """uint8 images [B, 3, H, W] → (pool3 [B, 2048], logits [B, 1008]) in float32."""

    def __init__(self, state_dict: dict, resize: str = "tf1"):
        super().__init__()
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
        import pytorch_fid.inception as pfi

        # pytorch-fid builds the network, then fetches its weights from the web; hand it ours instead
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = lambda *a, **k: state_dict
        try:
            self.net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False)
        finally:
            pfi.load_state_dict_from_url = original
        self.fc = nn.Linear(2048, 1008)
        self.fc.load_state_dict({"weight": state_dict["fc.weight"], "bias": state_dict["fc.bias"]})
        self.resize = resize
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.dtype != torch.uint8:
            raise TypeError(f"FIDInception takes uint8 images (quantised as the originals do), got {images.dtype}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected [B, 3, H, W] images, got {list(images.shape)}")
        x = images.to(next(self.parameters()).device, torch.float32) / 255.0
        if self.resize == "tf1":
            x = resize_tf1(x, 299)
        else:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        pool = self.net(x)[0].flatten(1)
        return pool, self.fc(pool)


def features(net: FIDInception, images: Tensor, batch_size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """pool3 and logits of uint8 images, batch by batch (float32 NumPy)."""
    pools, logits = [], []
    for i in range(0, images.shape[0], batch_size):
        p, lg = net(images[i:i + batch_size])
        pools.append(p.cpu().numpy())
        logits.append(lg.cpu().numpy())
    return np.concatenate(pools).astype(np.float32), np.concatenate(logits).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Statistics and metrics


@dataclass
class Stats:
    mu: np.ndarray
    sigma: np.ndarray
    pool: Optional[np.ndarray] = None  # the activations themselves (needed for KID)
    n: int = 0


def stats_of(pool: np.ndarray) -> Stats:
    a = np.asarray(pool, dtype=np.float64)
    return Stats(a.mean(0), np.cov(a, rowvar=False), np.asarray(pool, dtype=np.float32), a.shape[0])


def load_stats(path: str) -> Stats:
    """Score SDE's ``pool_3`` activations, or pytorch-fid's ``mu`` / ``sigma``."""
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if "pool_3" in keys:
            return stats_of(z["pool_3"])
        if {"mu", "sigma"} <= keys:
            return Stats(z["mu"].astype(np.float64), z["sigma"].astype(np.float64), None, int(z["n"]) if "n" in keys else 0)
    raise ValueError(f"{path}: expected 'pool_3' (Score SDE's stats) or 'mu' and 'sigma' (pytorch-fid's); found {sorted(keys)}")


def save_stats(path: str, pool: np.ndarray, *, keep_pool: bool = True, meta: Optional[dict] = None) -> dict:
    """Write ``mu``, ``sigma`` and ``n`` (pytorch-fid's form) and, with ``keep_pool``, ``pool_3``
    (Score SDE's form, for KID)."""
    from ..files import atomic_path

    s = stats_of(pool)
    arrays: dict[str, Any] = {"mu": s.mu, "sigma": s.sigma, "n": np.int64(s.n)}
    if keep_pool:
        arrays["pool_3"] = s.pool
    for k, v in (meta or {}).items():
        arrays[f"meta_{k}"] = np.asarray(v)
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, **arrays)
    return {"path": os.path.abspath(path), "n": s.n, "pool": bool(keep_pool)}


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½}, with symmetric eigendecompositions
    only (Σ₁^{½} Σ₂ Σ₁^{½} is symmetric PSD; rounding's tiny negative eigenvalues are clipped)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"mismatched statistics: {mu1.shape} vs {mu2.shape}, {s1.shape} vs {s2.shape}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def inception_score(logits: np.ndarray, splits: int = 1) -> tuple[float, float]:
    """exp(E KL(p(y|x) ‖ p(y))) per split; (mean, std) over the splits."""
    lg = np.asarray(logits, np.float64)
    logp = lg - lg.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    scores = []
    for part in np.array_split(logp, splits):
        p = np.exp(part)
        log_marg = np.log(p.mean(0) + 1e-300)
        scores.append(math.exp(float((p * (part - log_marg)).sum(1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, max_block: int = 1024) -> tuple[float, float]:
    """Unbiased MMD² with k(x, y) = (x·y/d + 1)³, averaged over ⌈max(n_a, n_b)/max_block⌉ blocks
    of equal share of each set; (mean, std over blocks)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.shape[1]
    n_blocks = max(1, math.ceil(max(a.shape[0], b.shape[0]) / max_block))
    out = []
    for xa, xb in zip(np.array_split(a, n_blocks), np.array_split(b, n_blocks)):
        m, n = xa.shape[0], xb.shape[0]
        kaa = (xa @ xa.T / d + 1) ** 3
        kbb = (xb @ xb.T / d + 1) ** 3
        kab = (xa @ xb.T / d + 1) ** 3
        out.append((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                   - 2 * kab.mean())
    return float(np.mean(out)), float(np.std(out))


def metrics(pool: np.ndarray, logits: np.ndarray, ref: Stats) -> dict:
    """FID (and KID when the reference keeps its activations) against ``ref``; IS of ``logits``."""
    s = stats_of(pool)
    is1, _ = inception_score(logits, 1)
    is10, is10_std = inception_score(logits, 10) if logits.shape[0] >= 10 else (float("nan"), float("nan"))
    out = {"fid": frechet_distance(s.mu, s.sigma, ref.mu, ref.sigma), "inception_score": is1,
           "inception_score10": {"mean": is10, "std": is10_std}, "n": int(pool.shape[0]), "reference_n": int(ref.n)}
    if ref.pool is not None:
        kid, kid_std = kernel_inception_distance(ref.pool, pool)
        out["kid"] = {"mean": kid, "std": kid_std}
    else:
        out["kid"] = None
    return out

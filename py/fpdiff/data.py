"""Training data: CIFAR-10 and ImageNet 32×32 from their pickled batches, and the toy sets.

Image files (docs/maths.md §11) are Python pickles — a pickle can name any callable and call it — so they
are read by the project's one safe unpickler (:mod:`fpdiff.safe_pickle`, the same allow-list as
checkpoints: NumPy numeric arrays and scalars, plain values), which refuses everything else,
naming it; a member larger than a batch of its set can be is refused before it is read. The
``data`` array is uint8 [N, 3072] (R, G, B planes of 32×32).

Preprocessing follows Score SDE (``datasets.py`` + ``get_data_scaler``): uint8 → [0, 1], random
horizontal flip when training (if ``randomFlip``), uniform dequantisation
x ← (255·x + u)/256 with u ~ U[0, 1) (if ``uniformDequantization``), then [−1, 1] when
``centered``.

Batches are a pure function of (seed, k): batch k of an image set is slice k mod (N // B) of the
permutation of epoch k // (N // B), and its flips and dequantisation noise are drawn from a
generator seeded by (seed, k); a toy batch is ``toys.sample_toy`` with such a generator. A run
resumed at step k therefore sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Optional

import numpy as np
import torch

from . import toys
from .safe_pickle import SafeUnpickler

Tensor = torch.Tensor

__all__ = [
    "DataError", "restricted_load", "ImageSet", "read_batch",
    "load_cifar10", "load_imagenet32", "load_images", "scaler", "inverse_scaler", "preprocess",
    "step_seed", "step_generator", "ImageBatches", "ToyBatches", "make_batches",
    "STREAM_DATA", "STREAM_LOSS", "STREAM_DROPOUT", "STREAM_PERMUTATION",
]

# Independent random streams of one training step (see step_seed).
STREAM_DATA = 0
STREAM_LOSS = 1
STREAM_DROPOUT = 2
STREAM_PERMUTATION = 3


class DataError(ValueError):
    """A data set that cannot be read: missing, malformed or unsafe. ``path`` names the file."""

    def __init__(self, message: str, path: Optional[str] = None):
        super().__init__(message)
        self.path = path


# ---------------------------------------------------------------------------------------------
# Unpickling: the project's one allow-list (fpdiff.safe_pickle), as for checkpoints

#: the most bytes one pickled batch of each set may hold (CIFAR-10: 10,000 images ≈ 31 MB; an
#: ImageNet32 training batch ≈ 128,000 images ≈ 394 MB); a larger member is refused unread, so a
#: small compressed archive cannot inflate into gigabytes
MAX_BATCH_BYTES = {"CIFAR-10": 64 << 20, "ImageNet32": 768 << 20}
#: what a data archive's members may declare in total (the listing walks them all)
MAX_ARCHIVE_BYTES = 16 << 30


def restricted_load(fh: BinaryIO, *, where: str = "data file") -> Any:
    """Unpickle ``fh`` with :class:`fpdiff.safe_pickle.SafeUnpickler` (NumPy numeric arrays,
    numbers, strings, lists, dicts; Python 2 pickles: byte strings stay bytes)."""
    try:
        return SafeUnpickler(fh, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{where}: {exc}", where) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"{where}: not a readable pickled data batch ({type(exc).__name__}: {exc})", where) from None


# ---------------------------------------------------------------------------------------------
# Image sets


@dataclass
class ImageSet:
    """uint8 images [N, 3, H, W] and int64 labels [N]."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _key(d: dict, name: str) -> Any:
    for k in (name, name.encode()):
        if k in d:
            return d[k]
    raise KeyError(name)


def read_batch(fh: BinaryIO, *, where: str = "data file", image_size: int = 32) -> ImageSet:
    """One pickled batch: ``{'data': uint8 [N, 3·H·W], 'labels': [N]}`` (keys str or bytes)."""
    obj = restricted_load(fh, where=where)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict with 'data' and 'labels', got {type(obj).__name__}", where)
    try:
        data = _key(obj, "data")
        labels = _key(obj, "labels")
    except KeyError as exc:
        raise DataError(f"{where}: the batch has no {exc.args[0]!r} entry (keys: {sorted(map(repr, obj))[:6]})", where) from None
    data = np.asarray(data)
    per = 3 * image_size * image_size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != per:
        raise DataError(f"{where}: 'data' must be uint8 [N, {per}], got {data.dtype} {list(data.shape)}", where)
    labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels_arr.shape[0] != data.shape[0]:
        raise DataError(f"{where}: {data.shape[0]} images but {labels_arr.shape[0]} labels", where)
    images = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, image_size, image_size)))
    return ImageSet(images, torch.from_numpy(labels_arr))


def _concat(parts: list[ImageSet]) -> ImageSet:
    return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


class _Source:
    """A directory, a .tar(.gz) or a .zip; members are found by their base name."""

    def __init__(self, path: str):
        self.path = path
        self.kind = "dir" if os.path.isdir(path) else None
        self._names: dict[str, str] = {}
        if self.kind == "dir":
            for root, dirs, files in os.walk(path):
                depth = os.path.relpath(root, path).count(os.sep)
                if depth >= 2:
                    dirs[:] = []
                for fname in files:
                    self._names.setdefault(fname, os.path.join(root, fname))
        elif os.path.isfile(path) and tarfile.is_tarfile(path):
            self.kind = "tar"
            declared = 0
            with tarfile.open(path) as tf:
                for m in tf:  # lazily, so an archive that declares too much stops the walk early
                    if m.isfile():
                        declared += m.size
                        if declared > MAX_ARCHIVE_BYTES:
                            raise DataError(f"{path}: its members declare more than {MAX_ARCHIVE_BYTES:,} "
                                            "bytes; refused (not a data set archive)", path)
                        self._names.setdefault(os.path.basename(m.name), m.name)
        elif os.path.isfile(path) and zipfile.is_zipfile(path):
            self.kind = "zip"
            with zipfile.ZipFile(path) as zf:
                for n in zf.namelist():
                    if not n.endswith("/"):
                        self._names.setdefault(os.path.basename(n), n)
        elif os.path.exists(path):
            raise DataError(f"{path}: expected a directory, a .tar.gz or a .zip of the data set", path)
        else:
            raise DataError(f"{path}: no such file or directory", path)

    def has(self, name: str) -> bool:
        return name in self._names

    def read(self, name: str, image_size: int, max_bytes: int) -> ImageSet:
        member = self._names[name]
        where = f"{self.path}:{member}" if self.kind != "dir" else member

        def check(size: int) -> None:
            if size > max_bytes:
                raise DataError(f"{where}: {size:,} bytes, more than a batch of this data set holds "
                                f"({max_bytes:,}); refused unread", where)

        if self.kind == "dir":
            check(os.path.getsize(member))
            with open(member, "rb") as fh:
                return read_batch(fh, where=where, image_size=image_size)
        if self.kind == "tar":
            with tarfile.open(self.path) as tf:
                info = tf.getmember(member)
                check(info.size)     # tarfile reads exactly the declared size
                f = tf.extractfile(info)
                assert f is not None
                return read_batch(io.BytesIO(f.read()), where=where, image_size=image_size)
        with zipfile.ZipFile(self.path) as zf:
            info = zf.getinfo(member)
            check(info.file_size)    # zipfile never inflates past the declared size
            with zf.open(info) as f:
                return read_batch(io.BytesIO(f.read()), where=where, image_size=image_size)


def _load_named(path: str, names: Iterable[str], what: str, image_size: int) -> ImageSet:
    src = _Source(path)
    names = list(names)
    missing = [n for n in names if not src.has(n)]
    if missing:
        raise DataError(
            f"{path}: {what} needs {', '.join(names)}; missing {', '.join(missing)}", path)
    max_bytes = MAX_BATCH_BYTES[what.split(" ")[0]]
    return _concat([src.read(n, image_size, max_bytes) for n in names])


CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
IMAGENET32_TRAIN = tuple(f"train_data_batch_{i}" for i in range(1, 11))
IMAGENET32_TEST = ("val_data",)


def load_cifar10(path: str, split: str = "train") -> ImageSet:
    """CIFAR-10, python version: ``path`` is cifar-10-python.tar.gz, cifar-10-batches-py/ or its
    parent. ``split``: "train" (data_batch_1..5) or "test" (test_batch)."""
    names = {"train": CIFAR10_TRAIN, "test": CIFAR10_TEST}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _load_named(path, names, f"CIFAR-10 {split}", 32)


def load_imagenet32(path: str, split: str = "train") -> ImageSet:
    """Downsampled ImageNet 32×32: a directory (or zip) holding train_data_batch_1..10 / val_data.
    Labels are as stored (1-based in the official files)."""
    names = {"train": IMAGENET32_TRAIN, "test": IMAGENET32_TEST}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if os.path.isdir(path):
        src = _Source(path)
        if not src.has(names[0]):  # the official download has one zip per split
            for z in (("Imagenet32_train.zip",) if split == "train" else ("Imagenet32_val.zip",)):
                if src.has(z):
                    return _load_named(src._names[z], names, f"ImageNet32 {split}", 32)
    return _load_named(path, names, f"ImageNet32 {split}", 32)


def data_path(data_cfg: Any) -> str:
    path = data_cfg.path or os.environ.get("FPD_DATA_DIR")
    if not path:
        raise DataError(f"data.path is not set (and FPD_DATA_DIR is not either): where is the {data_cfg.kind} data set?")
    return os.path.expanduser(str(path))


def load_images(data_cfg: Any, split: str = "train") -> ImageSet:
    kind = data_cfg.kind
    path = data_path(data_cfg)
    if kind == "cifar10":
        return load_cifar10(path, split)
    if kind == "imagenet32":
        return load_imagenet32(path, split)
    raise ValueError(f"load_images: data.kind {kind!r} is not an image set")


# ---------------------------------------------------------------------------------------------
# Preprocessing


def scaler(data_cfg: Any) -> Callable[[Tensor], Tensor]:
    """[0, 1] → model space: identity, or 2x − 1 when ``centered``."""
    return (lambda x: 2 * x - 1) if data_cfg.centered else (lambda x: x)


def inverse_scaler(data_cfg: Any) -> Callable[[Tensor], Tensor]:
    return (lambda x: (x + 1) / 2) if data_cfg.centered else (lambda x: x)


def preprocess(images: Tensor, data_cfg: Any, *, train: bool = True,
               generator: Optional[torch.Generator] = None, device: Any = None) -> Tensor:
    """uint8 [B, C, H, W] → float32 model-space images (Score SDE's pipeline, seeded)."""
    x = images.to(device=device, dtype=torch.float32) / 255.0
    if train and data_cfg.random_flip:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        if bool(flip.any()):
            flip = flip.to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if data_cfg.uniform_dequantization:
        u = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device)
        x = (255.0 * x + u) / 256.0
    return scaler(data_cfg)(x)


# ---------------------------------------------------------------------------------------------
# Seeded batches


def step_seed(seed: int, k: int, stream: int = STREAM_DATA) -> int:
    """A 63-bit seed that depends only on (seed, k, stream) (NumPy's SeedSequence hashing)."""
    a, b = np.random.SeedSequence([int(seed), int(k), int(stream)]).generate_state(2, np.uint32)
    return ((int(a) << 32) | int(b)) & ((1 << 63) - 1)


def step_generator(seed: int, k: int, stream: int, device: Any = "cpu",
                   generator: Optional[torch.Generator] = None) -> torch.Generator:
    """A generator on ``device`` seeded by (seed, k, stream); reuses ``generator`` if given."""
    g = generator if generator is not None else torch.Generator(device=device)
    g.manual_seed(step_seed(seed, k, stream))
    return g


class ImageBatches:
    """Batch k of an image set, a pure function of (seed, k). Drops the last partial batch of an
    epoch, as the original's repeated, batched tf.data pipeline effectively does."""

    def __init__(self, images: ImageSet, data_cfg: Any, batch_size: int, seed: int, *, train: bool = True):
        n = len(images)
        if batch_size > n:
            raise DataError(f"training.batchSize {batch_size} exceeds the {n} images of the data set")
        self.images = images
        self.data_cfg = data_cfg
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.train = train
        self.per_epoch = n // self.batch_size
        self._perm_epoch = -1
        self._perm: Optional[Tensor] = None
        self._gen = torch.Generator()

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._perm_epoch:
            g = step_generator(self.seed, epoch, STREAM_PERMUTATION, generator=self._gen)
            self._perm = torch.randperm(len(self.images), generator=g)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def indices(self, k: int) -> Tensor:
        epoch, j = divmod(int(k), self.per_epoch)
        perm = self._permutation(epoch)
        return perm[j * self.batch_size:(j + 1) * self.batch_size]

    def batch(self, k: int, device: Any = None) -> Tensor:
        idx = self.indices(k)
        g = step_generator(self.seed, k, STREAM_DATA, generator=self._gen)
        return preprocess(self.images.images[idx], self.data_cfg, train=self.train, generator=g, device=device)


class ToyBatches:
    """A fresh toy sample per step (mle_score_ode's ``inf_train_gen``), seeded by (seed, k)."""

    def __init__(self, data_cfg: Any, batch_size: int, seed: int):
        self.dataset = str(data_cfg.dataset)
        self.dim = data_cfg.dim
        self.scale = data_cfg.scale
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._gen = torch.Generator()

    def batch(self, k: int, device: Any = None) -> Tensor:
        g = step_generator(self.seed, k, STREAM_DATA, generator=self._gen)
        return toys.sample_toy(self.dataset, self.batch_size, dim=self.dim, scale=self.scale,
                               generator=g, dtype=torch.float32, device=device)


def make_batches(data_cfg: Any, batch_size: int, seed: int, *, split: str = "train",
                 images: Optional[ImageSet] = None):
    """The batch source for an experiment's ``data`` (toy: fresh samples; images: the split)."""
    if data_cfg.kind == "toy":
        return ToyBatches(data_cfg, batch_size, seed)
    if images is None:
        images = load_images(data_cfg, split)
    return ImageBatches(images, data_cfg, batch_size, seed, train=(split == "train"))

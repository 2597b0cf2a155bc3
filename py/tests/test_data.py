"""Data loading (fpdiff.data): CIFAR-10 / ImageNet32 pickles written here in the real formats,
the restricted unpickler, Score SDE preprocessing and batches that are functions of (seed, k)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from fpdiff import config as C

from fpdiff import data as D


def cifar_doc(n, offset=0, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    img[:, 0] = np.arange(offset, offset + n) % 256  # R plane, pixel (0, 0): the image's index
    return {b"batch_label": b"synthetic", b"labels": [(offset + i) % 10 for i in range(n)], b"data": img,
            b"filenames": [b"x.png"] * n}


def write_cifar_dir(root, n=6):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    docs = {}
    for i in range(1, 6):
        docs[f"data_batch_{i}"] = cifar_doc(n, offset=(i - 1) * n, seed=i)
    docs["test_batch"] = cifar_doc(n, offset=100, seed=9)
    for name, doc in docs.items():
        with open(d / name, "wb") as fh:
            pickle.dump(doc, fh, protocol=2)  # as the original files (Python 2 era, byte keys)
    return d, docs


def test_cifar10_from_directory_parent_and_tarball(tmp_path):
    d, docs = write_cifar_dir(tmp_path / "raw", n=6)
    train = D.load_cifar10(str(d), "train")
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [i % 10 for i in range(30)]
    # channel planes: R is the first 1024 bytes, G the next, B the last
    raw = docs["data_batch_2"][b"data"][1]
    img = train.images[6 + 1]
    assert torch.equal(img[0].reshape(-1), torch.from_numpy(raw[:1024].copy()))
    assert torch.equal(img[2].reshape(-1), torch.from_numpy(raw[2048:].copy()))
    assert int(img[0, 0, 0]) == 7
    test = D.load_cifar10(str(tmp_path / "raw"), "test")  # the parent directory works too
    assert len(test) == 6 and int(test.images[0, 0, 0, 0]) == 100
    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(d, arcname="cifar-10-batches-py")
    from_tar = D.load_cifar10(str(tgz), "train")
    assert torch.equal(from_tar.images, train.images) and torch.equal(from_tar.labels, train.labels)


def test_imagenet32_directory_and_zip(tmp_path):
    root = tmp_path / "in32"
    root.mkdir()
    for i in range(1, 11):
        with open(root / f"train_data_batch_{i}", "wb") as fh:
            doc = {"data": np.full((2, 3072), i, dtype=np.uint8), "labels": [i, i], "mean": np.zeros(3072)}
            pickle.dump(doc, fh, protocol=4)  # str keys, as the downsampled ImageNet files
    with open(root / "val_data", "wb") as fh:
        pickle.dump({"data": np.zeros((3, 3072), np.uint8), "labels": [1, 2, 3]}, fh)
    train = D.load_imagenet32(str(root), "train")
    assert train.images.shape == (20, 3, 32, 32) and train.labels.tolist() == [i for i in range(1, 11) for _ in (0, 1)]
    zpath = tmp_path / "Imagenet32_val.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(root / "val_data", "Imagenet32_val/val_data")
    assert len(D.load_imagenet32(str(zpath), "test")) == 3


def test_restricted_unpickler_refuses_code_and_object_arrays(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(D.DataError, match="refused global"):
        D.restricted_load(io.BytesIO(pickle.dumps({b"data": Evil()})))
    with pytest.raises(D.DataError, match="refused"):
        D.restricted_load(io.BytesIO(pickle.dumps({b"data": np.array([{"a": 1}], dtype=object)})))
    # a CIFAR-shaped file whose data is not uint8 [N, 3072] is refused with its path
    d, _ = write_cifar_dir(tmp_path, n=2)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 10), np.float32), b"labels": [0, 1]}, fh, protocol=2)
    with pytest.raises(D.DataError, match="test_batch.*uint8"):
        D.load_cifar10(str(d), "test")
    # protocol 5 arrays (out-of-band capable) are fine
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(D.restricted_load(io.BytesIO(pickle.dumps({"x": arr}, protocol=5)))["x"], arr)


def test_missing_files_are_named(tmp_path, monkeypatch):
    d, _ = write_cifar_dir(tmp_path, n=2)
    os.remove(d / "data_batch_3")
    with pytest.raises(D.DataError, match="missing data_batch_3"):
        D.load_cifar10(str(d), "train")
    with pytest.raises(D.DataError, match="no such file"):
        D.load_cifar10(str(tmp_path / "nope"), "train")
    monkeypatch.delenv("FPD_DATA_DIR", raising=False)
    with pytest.raises(D.DataError, match="data.path is not set"):
        D.load_images(C.CIFAR10Config())
    monkeypatch.setenv("FPD_DATA_DIR", str(d))
    assert len(D.load_images(C.CIFAR10Config(), "test")) == 2


def test_preprocessing_follows_score_sde():
    imgs = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(2, 3, 32, 32)
    plain = D.preprocess(imgs, C.CIFAR10Config(random_flip=False))
    assert plain.dtype == torch.float32 and torch.allclose(plain, imgs.float() / 255.0)
    centered = D.preprocess(imgs, C.CIFAR10Config(centered=True, random_flip=False))
    assert torch.allclose(centered, 2 * imgs.float() / 255.0 - 1) and centered.min() >= -1 and centered.max() <= 1
    g = torch.Generator().manual_seed(0)
    deq = D.preprocess(imgs, C.CIFAR10Config(uniform_dequantization=True, random_flip=False), generator=g)
    u = deq * 256 - imgs.float()  # x = (255·(k/255) + u)/256 → u = 256x − k
    assert (u >= -1e-4).all() and (u < 1 + 1e-4).all() and u.std() > 0.2
    many = imgs[:1].expand(64, -1, -1, -1)
    flipped = D.preprocess(many, C.CIFAR10Config(random_flip=True), generator=torch.Generator().manual_seed(1))
    same = [torch.equal(f, many[0].float() / 255) for f in flipped]
    mirrored = [torch.equal(f, many[0].flip(-1).float() / 255) for f in flipped]
    assert all(a or b for a, b in zip(same, mirrored)) and 10 < sum(mirrored) < 54
    assert torch.equal(D.preprocess(many, C.CIFAR10Config(random_flip=True), train=False), many.float() / 255)
    assert torch.allclose(D.inverse_scaler(C.CIFAR10Config(centered=True))(D.scaler(C.CIFAR10Config(centered=True))(plain)), plain)


def test_image_batches_are_functions_of_seed_and_step(tmp_path):
    d, _ = write_cifar_dir(tmp_path, n=6)
    cfg = C.CIFAR10Config(path=str(d), random_flip=True, uniform_dequantization=True)
    a = D.make_batches(cfg, batch_size=4, seed=11)
    b = D.make_batches(cfg, batch_size=4, seed=11)
    # b asked out of order (as after a resume) gives the same batches
    later = [b.batch(k) for k in (9, 3, 0)]
    first = [a.batch(k) for k in range(10)]
    assert torch.equal(later[0], first[9]) and torch.equal(later[1], first[3]) and torch.equal(later[2], first[0])
    assert not torch.equal(first[0], first[1])
    # one epoch = 30 // 4 = 7 batches of distinct images (the R value at (0, 0) is the index)
    idx = torch.cat([a.indices(k) for k in range(7)])
    assert idx.unique().numel() == 28
    assert not torch.equal(a.indices(0), a.indices(7))  # a new permutation per epoch
    c = D.make_batches(cfg, batch_size=4, seed=12)
    assert not torch.equal(c.batch(0), first[0])
    with pytest.raises(D.DataError, match="exceeds"):
        D.make_batches(cfg, batch_size=31, seed=0)


def test_toy_batches_are_functions_of_seed_and_step():
    cfg = C.ToyDataConfig(dataset="checkerboard", dim=2)
    a, b = D.make_batches(cfg, 500, seed=1), D.make_batches(cfg, 500, seed=1)
    x = a.batch(5)
    assert x.shape == (500, 2) and x.dtype == torch.float32
    assert torch.equal(b.batch(5), x) and not torch.equal(a.batch(6), x)
    assert (x.abs() <= 4).all()
    assert D.step_seed(1, 5, 0) != D.step_seed(1, 5, 1) != D.step_seed(2, 5, 1)


def test_an_archive_member_larger_than_a_batch_is_refused_unread(tmp_path):
    """A .tar.gz whose data_batch_1 inflates to 256 MiB (from ~250 kB): refused by its declared
    size, before a byte of it is read (issue 11, item 9); the same for a zip member and a file."""
    import json
    import subprocess
    import sys
    import textwrap

    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.left = n

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    d, _ = write_cifar_dir(tmp_path / "raw", n=2)
    bomb = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(bomb, "w:gz", compresslevel=1) as tf:
        for name in sorted(os.listdir(d)):
            if name != "data_batch_1":
                tf.add(d / name, arcname=f"cifar-10-batches-py/{name}")
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 256 << 20
        tf.addfile(info, io.BufferedReader(Zeros(info.size), 1 << 20))
    assert bomb.stat().st_size < (2 << 20)
    py = os.path.join(os.path.dirname(__file__), "..")
    script = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {py!r})
        from fpdiff import data as D
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            D.load_cifar10({str(bomb)!r}, "train")
            err = None
        except D.DataError as e:
            err = str(e)
        print(json.dumps({{"error": err, "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["error"] and "data_batch_1: 268,435,456 bytes, more than a batch of this data set holds" in res["error"]
    assert "refused unread" in res["error"] and res["grew_mb"] < 100, res
    # a zip member and a plain file of the same kind are refused the same way
    zpath = tmp_path / "cifar.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(os.listdir(d)):
            if name != "test_batch":
                zf.write(d / name, f"cifar-10-batches-py/{name}")
        with zf.open("cifar-10-batches-py/test_batch", "w", force_zip64=True) as fh:
            for _ in range(80):
                fh.write(bytes(1 << 20))
    with pytest.raises(D.DataError, match="test_batch: 83,886,080 bytes, more than a batch"):
        D.load_cifar10(str(zpath), "test")
    with open(d / "data_batch_2", "wb") as fh:
        fh.truncate(80 << 20)
    with pytest.raises(D.DataError, match="data_batch_2: 83,886,080 bytes, more than a batch"):
        D.load_cifar10(str(d), "train")

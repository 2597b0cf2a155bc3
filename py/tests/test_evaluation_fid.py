"""FID / IS / KID (fpdiff.evaluation.fid): the Fréchet distance against closed-form Gaussians, the
Inception feature pipeline with random weights, statistics files in both formats, weight lookup."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.linalg
import torch

from fpdiff.evaluation import fid as F


def rotation(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_frechet_distance_of_gaussians_in_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    want = float(((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert F.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    q = rotation(d, 1)  # commuting covariances: the same closed form in a rotated basis
    assert F.frechet_distance(m1, q @ np.diag(a) @ q.T, m2, q @ np.diag(b) @ q.T) == pytest.approx(want, rel=1e-9)
    # general (non-commuting) covariances: the defining formula with scipy's matrix square roots
    s1 = np.cov(rng.normal(size=(50, d)), rowvar=False)
    s2 = np.cov(rng.normal(size=(50, d)) @ rng.normal(size=(d, d)), rowvar=False)
    r1 = scipy.linalg.sqrtm(s1).real
    ref = float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(r1 @ s2 @ r1).real))
    assert F.frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    assert F.frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)
    assert F.frechet_distance([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(1.0 + 1.0)
    with pytest.raises(ValueError, match="mismatched"):
        F.frechet_distance(m1, s1, m1[:3], s1[:3, :3])


def test_sample_statistics_converge_to_the_gaussian_distance():
    rng = np.random.default_rng(2)
    d, n = 3, 200_000
    q = rotation(d, 3)
    cov = q @ np.diag([0.5, 1.0, 2.0]) @ q.T
    x = rng.multivariate_normal(np.zeros(d), cov, size=n)
    s = F.stats_of(x)
    # N(0, cov) vs N(1, cov): the distance is ‖Δμ‖² = d exactly
    assert F.frechet_distance(s.mu, s.sigma, np.ones(d), cov) == pytest.approx(d, rel=0.01)


def test_inception_score_and_kid_on_known_cases():
    k = 8
    uniform = np.zeros((40, k))
    assert F.inception_score(uniform)[0] == pytest.approx(1.0)
    onehot = np.full((40, k), -50.0)
    onehot[np.arange(40), np.arange(40) % k] = 50.0
    assert F.inception_score(onehot)[0] == pytest.approx(k, rel=1e-6)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    same, _ = F.kernel_inception_distance(a, b)
    shifted, _ = F.kernel_inception_distance(a, b + 1.0)
    assert abs(same) < 0.05 and shifted > 10 * abs(same)
    # one block: the unbiased MMD² written out element by element
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3))
    k_ = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    want = (sum(k_(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
            + sum(k_(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / 72
            - 2 * sum(k_(x[i], y[j]) for i in range(7) for j in range(9)) / 63)
    assert F.kernel_inception_distance(x, y)[0] == pytest.approx(want, rel=1e-10)


def test_tf1_resize_samples_without_half_pixel_centres():
    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    y = F.resize_tf1(x, 4)
    # rows/cols: source = dst · 2/4 → 0, 0.5, 1, 1.5 (clamped to the last pixel)
    assert torch.allclose(y[0, 0, 0], torch.tensor([1.0, 2.0, 3.0, 3.0]))
    assert torch.allclose(y[0, 0, :, 0], torch.tensor([1.0, 3.0, 5.0, 5.0]))
    assert torch.allclose(y[0, 0, 1, 1], torch.tensor(4.0))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return F.FIDInception(F.random_weights(0))


def test_feature_pipeline_with_random_weights(net):
    g = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8)
    pool, logits = net(imgs)
    assert pool.shape == (5, 2048) and logits.shape == (5, 1008)
    assert pool.dtype == torch.float32 and bool((pool >= 0).all())  # average of ReLU outputs
    # batching does not change the features (random weights with unit batch-norm statistics give
    # huge activations, hence relative tolerances)
    p2, l2 = F.features(net, imgs, batch_size=2)
    assert np.allclose(p2, pool.numpy(), rtol=1e-4, atol=0) and np.allclose(l2, logits.numpy(), rtol=1e-3, atol=0)
    # the logits are the fc layer of the same weights applied to pool3
    sd = F.random_weights(0)
    ref = (pool.double() @ sd["fc.weight"].double().T + sd["fc.bias"].double()).float()
    assert float((logits - ref).norm() / ref.norm()) < 1e-5
    # the two resizes agree closely but not exactly; other sizes (ImageNet 64) resize too
    other = F.FIDInception(sd, resize="pytorch")
    q, _ = other(imgs)
    assert not torch.equal(q, pool) and float((q - pool).norm() / pool.norm()) < 0.1
    big = torch.randint(0, 256, (1, 3, 64, 64), generator=g, dtype=torch.uint8)
    assert net(big)[0].shape == (1, 2048)
    with pytest.raises(TypeError, match="uint8"):
        net(imgs.float() / 255)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        net(imgs[:, :1])


def test_stats_files_round_trip_in_both_formats(tmp_path, net):
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(64, 256)).astype(np.float32)  # the format does not care about the width
    info = F.save_stats(str(tmp_path / "mine.npz"), pool, meta={"split": "train"})
    assert info["n"] == 64 and info["pool"]
    s = F.load_stats(str(tmp_path / "mine.npz"))
    assert np.allclose(s.mu, pool.mean(0), atol=1e-6) and s.pool.shape == (64, 256) and s.n == 64
    np.savez(tmp_path / "score_sde.npz", pool_3=pool)  # Score SDE's cifar10_stats.npz layout
    t = F.load_stats(str(tmp_path / "score_sde.npz"))
    # a rank-deficient covariance (64 rows, 256 dims): the square roots of rounding-level
    # eigenvalues leave ~1e-7 of tr Σ
    assert np.allclose(t.sigma, s.sigma)
    assert F.frechet_distance(s.mu, s.sigma, t.mu, t.sigma) == pytest.approx(0, abs=1e-6 * np.trace(s.sigma))
    np.savez(tmp_path / "pfid.npz", mu=s.mu, sigma=s.sigma)  # pytorch-fid's layout: no KID
    u = F.load_stats(str(tmp_path / "pfid.npz"))
    assert u.pool is None
    m = F.metrics(pool[:32], rng.normal(size=(32, 1008)), u)
    assert m["kid"] is None and m["fid"] > 0
    m = F.metrics(pool[:32], rng.normal(size=(32, 1008)), s)
    assert set(m["kid"]) == {"mean", "std"}
    np.savez(tmp_path / "bad.npz", x=pool)
    with pytest.raises(ValueError, match="pool_3"):
        F.load_stats(str(tmp_path / "bad.npz"))


def test_weights_are_looked_up_and_a_missing_file_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FPD_INCEPTION", raising=False)
    with pytest.raises(F.InceptionMissing) as info:
        F.find_inception()
    msg = str(info.value)
    assert F.WEIGHTS_FILE in msg and F.WEIGHTS_URL in msg and "--inception" in msg and "FPD_INCEPTION" in msg
    with pytest.raises(F.InceptionMissing, match="nope.pth"):
        F.find_inception(str(tmp_path / "nope.pth"))
    target = tmp_path / "torch" / "hub" / "checkpoints" / F.WEIGHTS_FILE
    target.parent.mkdir(parents=True)
    torch.save(F.random_weights(0), str(target))
    assert F.find_inception() == str(target)
    monkeypatch.setenv("FPD_INCEPTION", str(target))
    assert F.find_inception() == str(target)
    sd, meta = F.load_weights(str(target))
    assert not meta["verified"] and len(meta["sha256"]) == 64 and "fc.weight" in sd

"""Whole-data-set bits/dim and sampling in shards (fpdiff.evaluation): units are a function of
(seed, unit) alone, resuming after a stop gives the uninterrupted result, settings are checked;
and (opt-in, ``npm run test:original``) the per-image bits/dim equal Score SDE's likelihood.py on
the fixture network with the same dequantisation noise and probes."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import _resolve as resolve
from fpdiff.derivatives import sample_probes
from fpdiff.evaluation import bpd_dataset as B
from fpdiff.evaluation.sample_shards import collect, sample_units
from fpdiff.evaluation.sampler import sample_shape, sampler_spec
from fpdiff.evaluation.shards import SettingsMismatch, ShardsStopped, WorkDir
from fpdiff.likelihood import bits_per_dim
from fpdiff.models import build_network
from fpdiff.score import score_model
from fpdiff.sde import make_sde

from _ckpt_helpers import ORIG_DIR, fixture_configs, fixture_paths

TINY = {"kind": "ncsnpp", "nf": 8, "chMult": [1, 2], "numResBlocks": 1, "attnResolutions": [16]}
FAST = dict(solver="euler", steps=4)  # a fixed, small cost (dopri5 on an untrained VE net is stiff)


@pytest.fixture(scope="module")
def model():
    exp = resolve.experiment({"name": "t/bpd", "sde": {"kind": "ve"}, "model": TINY, "data": {"kind": "cifar10"},
                                  "loss": {"terms": [{"kind": "dsm"}]}})
    torch.manual_seed(0)
    net = build_network(exp.model, exp.data).eval()
    return score_model(net, make_sde(exp.sde), exp.model)


def images(n=5, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def settings(**kw):
    base = dict(dataset="cifar10", split="test", n=5, repeats=2, batch_size=2, eps=1e-5, rtol=1e-5, atol=1e-5,
                probe="rademacher", dequantize=True, centered=False, seed=3, model={"name": "t"}, **FAST)
    base.update(kw)
    return B.settings(**base)


def run(model, out, should_stop=lambda: False):
    return B.dataset_bpd(model, images(), WorkDir(str(out), settings()), repeats=2, batch_size=2, seed=3,
                         should_stop=should_stop, **FAST)


def test_units_are_bits_per_dim_of_their_batch_and_a_stopped_run_resumes_to_the_same_result(model, tmp_path):
    full = run(model, tmp_path / "a")
    assert full["complete"] and full["images"] == 5 and len(full["repeats"]) == 2
    recs = WorkDir(str(tmp_path / "a"), settings()).finished()
    assert sorted(recs) == list(range(6))  # 3 batches × 2 repeats
    # unit 4 = repeat 1, rows 2..3: bits_per_dim with that unit's generator
    x = images()[2:4].float() / 255.0
    direct = bits_per_dim(model, x, centered=False, dequantize=True, generator=B.unit_generator(3, 4, "cpu"),
                          divergence="hutchinson", probe="rademacher", method="euler", rtol=1e-5, atol=1e-5,
                          options={"step_size": (1 - 1e-5) / 4})
    assert recs[4]["repeat"] == 1 and (recs[4]["lo"], recs[4]["hi"]) == (2, 4)
    assert recs[4]["bpd"] == pytest.approx(direct.per_sample[0].tolist(), rel=1e-12)
    # the summary: mean over images of each image's mean over repeats; s.e. over images
    per = np.array([[v for u in sorted(recs) if recs[u]["repeat"] == r for v in recs[u]["bpd"]] for r in (0, 1)])
    assert full["bpd"] == pytest.approx(per.mean())
    assert full["stderr"] == pytest.approx(per.mean(0).std(ddof=1) / np.sqrt(5))
    assert full["repeats"][1]["bpd"] == pytest.approx(per[1].mean())
    assert full["nfe"]["histogram"] == {"4": 6} and full["settings"]["offset"] == 8.0
    # stop after the first unit, then continue: the same numbers
    calls = {"n": 0}

    def stop_once():
        calls["n"] += 1
        return calls["n"] == 1

    with pytest.raises(ShardsStopped):
        run(model, tmp_path / "b", should_stop=stop_once)
    assert len(WorkDir(str(tmp_path / "b"), settings()).finished()) == 1
    with open(tmp_path / "b" / "units.jsonl", "a") as fh:
        fh.write('{"unit": 5, "bpd": [1.0')  # a write torn by a kill: ignored, the unit is redone
    resumed = run(model, tmp_path / "b")
    assert resumed["bpd"] == full["bpd"] and resumed["repeats"] == full["repeats"]


def test_other_settings_in_the_same_directory_are_refused(model, tmp_path):
    WorkDir(str(tmp_path / "a"), settings())
    with pytest.raises(SettingsMismatch, match="steps: 4 → 8"):
        WorkDir(str(tmp_path / "a"), settings(steps=8))


def test_sample_shards_depend_on_seed_and_unit_only(tmp_path):
    exp = resolve.experiment({"name": "toy/s", "sde": {"kind": "ve"},
                                  "model": {"kind": "mlp", "embedDim": 8, "timeHidden": [16], "xHidden": [16],
                                            "width": 16, "hidden": [16]},
                                  "data": {"kind": "toy", "dataset": "checkerboard"}, "loss": {"terms": [{"kind": "dsm"}]},
                                  "sampling": {"method": "pc", "N": 4}})
    torch.manual_seed(0)
    net = build_network(exp.model, exp.data).eval()
    sm = score_model(net, make_sde(exp.sde), exp.model)
    spec = sampler_spec(exp)
    kw = dict(n=10, seed=7, device="cpu", image=False)
    wa = WorkDir(str(tmp_path / "a"), {"s": 1})
    ra = sample_units(sm, spec, sample_shape(exp), wa, batch_size=4, **kw)
    assert [r["hi"] - r["lo"] for r in ra.values()] == [4, 4, 2]
    wb = WorkDir(str(tmp_path / "b"), {"s": 1})
    with pytest.raises(ShardsStopped):
        sample_units(sm, spec, sample_shape(exp), wb, batch_size=4, should_stop=lambda: True, **kw)
    rb = sample_units(sm, spec, sample_shape(exp), wb, batch_size=4, **kw)
    assert np.array_equal(collect(wa, "samples", ra), collect(wb, "samples", rb))
    wc = WorkDir(str(tmp_path / "c"), {"s": 2})
    rc = sample_units(sm, spec, sample_shape(exp), wc, batch_size=4, **{**kw, "seed": 8})
    assert not np.array_equal(collect(wa, "samples", ra), collect(wc, "samples", rc))


@pytest.mark.original
def test_per_image_bpd_equals_score_sde_likelihood_py_on_the_fixture(tmp_path):
    """Score SDE's own ``likelihood.get_likelihood_fn`` (scipy RK45 on the host) on the fixture
    network, fed the same dequantised images and the same Rademacher probe as our unit 0, agrees
    with ours per image to the ODE tolerance."""
    if not os.path.isfile(os.path.join(ORIG_DIR, "likelihood.py")):
        pytest.skip(f"original Score SDE code not found at {ORIG_DIR}")
    from fpdiff import checkpoints as ck

    model_cfg, data_cfg = fixture_configs("ve_ncsnpp_small_seed0")
    ckpt, _ = fixture_paths("ve_ncsnpp_small_seed0")
    net = build_network(model_cfg, data_cfg)
    ck.restore(net, ck.load_checkpoint(ckpt), weights="ema")
    net.eval()
    from fpdiff.sde import VESDE

    ours = score_model(net, VESDE(0.01, 50, 1000), model_cfg)
    imgs = images(2, seed=4)
    tol = dict(rtol=1e-5, atol=1e-5)
    res = B.dataset_bpd(ours, imgs, WorkDir(str(tmp_path / "o"), {"t": 1}), repeats=1, batch_size=2, seed=0, **tol)
    mine = WorkDir(str(tmp_path / "o"), {"t": 1}).finished()[0]["bpd"]
    # the unit's draws, in bits_per_dim's order: dequantisation noise, then the probe
    g = B.unit_generator(0, 0, "cpu")
    x = imgs.float() / 255.0
    u = torch.rand(x.shape, generator=g)
    x_deq = (255.0 * x + u) / 256.0
    probe = sample_probes(x_deq, 1, "rademacher", g)[0]
    saved = {k: sys.modules.get(k) for k in ("models", "sde_lib", "likelihood")}
    for k in list(saved):
        sys.modules.pop(k, None)
    sys.path.insert(0, ORIG_DIR)
    try:
        import likelihood as orig_likelihood  # noqa: E402
        import sde_lib  # noqa: E402

        fn = orig_likelihood.get_likelihood_fn(sde_lib.VESDE(0.01, 50, 1000), lambda v: v, "Rademacher", **tol)
        real = torch.randint_like
        torch.randint_like = lambda data, low=0, high=2: (probe + 1) / 2  # the original draws its probe here
        try:
            bpd, _z, nfe = fn(net, x_deq)
        finally:
            torch.randint_like = real
    finally:
        sys.path.remove(ORIG_DIR)
        for k in [k for k in sys.modules if k in ("models", "sde_lib", "likelihood") or k.startswith("models.")]:
            sys.modules.pop(k, None)
        for k, v in saved.items():
            if v is not None:
                sys.modules[k] = v
    assert res["complete"]
    # at rtol = atol = 1e-3 the two differ by 0.011 bpd (7e-4 relative, both images alike): solver error
    assert mine == pytest.approx(bpd.tolist(), abs=1e-3), (mine, bpd.tolist(), nfe)

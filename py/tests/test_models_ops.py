"""Worker ops of the models area, called in-process (no socket): model.load, model.score,
ckpt.inspect, ckpt.save, ckpt.convert."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("fpdiff.ops.state")

from fpdiff import checkpoints as CK  # noqa: E402
from fpdiff import config as C  # noqa: E402
from fpdiff.ops import REGISTRY, OpContext, OpError, WorkerState  # noqa: E402
import fpdiff.ops.models  # noqa: E402,F401  (registers this area's ops only)

from _resolve import resolved
from _ckpt_helpers import FIXTURES, fixture_meta, fixture_paths, rel_err  # noqa: E402


def _call(name, args, state):
    ctx = OpContext(request_id=1, op=name, state=state, emit_fn=lambda _e: None)
    spec = REGISTRY[name]
    return spec.run(spec.parse(args), ctx)


def _experiment(name: str) -> dict:
    ve = fixture_meta(name)["sde"]["class"] == "VESDE"
    return resolved({
        "name": name.replace("_", "-"),
        "sde": {"kind": "ve" if ve else "vp"},
        "model": {"kind": "ncsnpp" if ve else "ddpmpp", "nf": 8},
        "data": {"kind": "cifar10", "centered": not ve},
        "loss": {"terms": [{"kind": "dsm"}]},
    })


@pytest.mark.parametrize("name", FIXTURES)
def test_load_and_score_reproduce_the_fixture(name):
    state = WorkerState()
    path, io_path = fixture_paths(name)
    res = _call("model.load", {"experiment": _experiment(name), "checkpoint": path,
                               "handle": "m", "device": "cpu"}, state)
    assert res["handle"] == "m" and res["step"] == 123 and res["hasEma"]
    assert res["checkpoint"]["sha256"] == fixture_meta(name)["checkpoint"]["sha256"]
    ref, _ = CK.safe_torch_load(io_path)
    for weights, suffix in (("model", ""), ("ema", "_ema")):
        out = _call("model.score", {"model": "m", "weights": weights, "x": ref["x"], "t": ref["t"],
                                    "batchSize": 3}, state)
        assert rel_err(out["output"], ref["model_out" + suffix]) <= 1e-5
        assert rel_err(out["score"], ref["score" + suffix]) <= 1e-5
        assert rel_err(out["labels"], ref["labels"]) <= 1e-6


def test_inspect_save_convert(tmp_path):
    state = WorkerState()
    name = "ve_ncsnpp_small_seed0"
    path, _ = fixture_paths(name)
    info = _call("ckpt.inspect", {"path": path}, state)
    assert info["step"] == 123 and info["ema"]["numUpdates"] == 123
    assert info["matchingPresets"][0] == {"preset": "ve/cifar10_ncsnpp_continuous", "overrides": {"nf": 8}}
    _call("model.load", {"experiment": _experiment(name), "checkpoint": path, "handle": "m"}, state)
    a = _call("ckpt.save", {"model": "m", "workdir": str(tmp_path), "snapshot": 2}, state)
    b = _call("ckpt.save", {"model": "m", "workdir": str(tmp_path), "meta": True}, state)
    assert a["kind"] == "snapshot" and a["path"].endswith(os.path.join("checkpoints", "checkpoint_2.pth"))
    assert b["kind"] == "meta" and a["sha256"] == b["sha256"] and a["step"] == 123
    ck, orig = CK.load_checkpoint(a["path"]), CK.load_checkpoint(path)
    assert all(torch.equal(ck.model[k], orig.model[k]) for k in orig.model)
    assert all(torch.equal(s, o) for s, o in zip(ck.ema["shadow_params"], orig.ema["shadow_params"]))
    c = _call("ckpt.convert", {"path": path, "out": str(tmp_path / "w.safetensors"),
                               "to": "safetensors"}, state)
    plain = CK.load_checkpoint(c["path"])
    assert plain.format == "state_dict" and plain.step == 123
    # EMA weights were exported: trainable tensors equal the shadows
    trainable = [k for k in plain.model if k not in ("sigmas", "all_modules.0.W")]
    assert all(torch.equal(plain.model[k], s) for k, s in zip(trainable, orig.ema["shadow_params"]))


def test_fresh_model_and_errors(tmp_path):
    state = WorkerState()
    name = "vp_ddpmpp_small_seed0"
    res = _call("model.load", {"experiment": _experiment(name)}, state)
    assert res["handle"] == "vp-ddpmpp-small-seed0" and res["step"] == 0 and res["checkpoint"] is None
    again = _call("model.load", {"experiment": _experiment(name)}, state)
    assert again["handle"] == "vp-ddpmpp-small-seed0-2"
    with pytest.raises(OpError) as ei:       # a VE checkpoint into a VP experiment
        _call("model.load", {"experiment": _experiment(name),
                             "checkpoint": fixture_paths("ve_ncsnpp_small_seed0")[0]}, state)
    assert ei.value.field == "args.checkpoint" and "architecture_mismatch" in ei.value.message
    assert ei.value.details["matchingPresets"][0]["preset"] == "ve/cifar10_ncsnpp_continuous"
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(100))
    with pytest.raises(OpError, match="not_a_checkpoint"):
        _call("ckpt.inspect", {"path": str(junk)}, state)
    with pytest.raises(OpError, match="no such file"):
        _call("ckpt.inspect", {"path": str(tmp_path / "missing.pth")}, state)
    with pytest.raises(OpError, match="exactly one of snapshot"):
        _call("ckpt.save", {"model": "vp-ddpmpp-small-seed0", "workdir": str(tmp_path)}, state)
    with pytest.raises(OpError, match="no model"):
        _call("model.score", {"model": "nope", "x": torch.zeros(1, 3, 32, 32), "t": 0.5}, state)


@pytest.mark.parametrize("fmt", ["pt", "npz"])
def test_ckpt_score_file_to_file(tmp_path, fmt):
    import numpy as np

    name = "vp_ddpmpp_small_seed0"
    path, io_path = fixture_paths(name)
    ref, _ = CK.safe_torch_load(io_path)
    inp = tmp_path / f"in.{fmt}"
    if fmt == "pt":
        torch.save({"x": ref["x"], "t": ref["t"]}, str(inp))
    else:
        np.savez(str(inp), x=ref["x"].numpy(), t=ref["t"].numpy())
    res = _call("ckpt.score", {"experiment": _experiment(name), "checkpoint": path, "input": str(inp),
                               "out": str(tmp_path / "scores"), "weights": "ema",
                               # in-process: the worker's TF32-off default is not applied here, and
                               # the expected values are CPU float32 results of the original code
                               "device": "cpu"}, WorkerState())
    assert res["out"].endswith("scores.npz") and res["n"] == 4 and res["step"] == 123
    with np.load(res["out"], allow_pickle=False) as z:
        assert rel_err(torch.from_numpy(z["output"]), ref["model_out_ema"]) <= 1e-5
        assert rel_err(torch.from_numpy(z["score"]), ref["score_ema"]) <= 1e-5

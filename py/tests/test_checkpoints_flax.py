"""flax checkpoints (score_flow VP DDPM++, score_sde VE NCSN++; fixtures made with the original
JAX code): strict loading, the original's outputs and scores, the exact PyTorch state dict, the
full-size name maps, conversion, fine-tuning with every loss, and specific errors for bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from fpdiff import checkpoints as C
from fpdiff.models import ARCHITECTURES, EMA, NCSNpp, build_network, meta_init
from fpdiff.score import score_model
from fpdiff.sde import VPSDE

from _flax_helpers import (FLAX_FIXTURES, PRESET, VE, VP, arrays, chunked, ckpt_path, ext_array,
                           layout, mapping, meta, model_and_data, read_tree, sde_of,
                           torch_state_dict, workdir, write_tree)

#: network outputs: float32 against the JAX code, relative to each sample's largest |output|
TOL_OUT = 1e-5
#: VP scores: score_flow's VPSDE takes std = sqrt(-2c) where |c| <= 1e-3 (its "high_precision"
#: branch); fpdiff computes the exact std stably (-expm1). The two differ by about |c|/2 relative,
#: up to 5e-4 inside the branch; the fixture's t[1] (c = -3.2e-4) gives 1.6e-4. Outside the branch
#: (and for VE, whose score is the output) the tolerance is TOL_OUT.
TOL_SCORE_VP_BRANCH = 2e-4


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


def _per_sample(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    b = want.shape[0]
    return np.abs(got - want).reshape(b, -1).max(1) / np.abs(want).reshape(b, -1).max(1)


def _net(name: str) -> nn.Module:
    m, d = model_and_data(name)
    return build_network(m, d)


# ---------------------------------------------------------------------------------------------
# reading

@pytest.mark.parametrize("name", FLAX_FIXTURES)
def test_reads_the_state_and_every_leaf_decodes(name):
    ck = C.load_checkpoint(ckpt_path(name))
    info = meta(name)
    assert ck.format == "flax" and ck.file.format == "msgpack" and ck.step == 123
    assert ck.sha256 == info["checkpoint"]["sha256"] and ck.bytes == info["checkpoint"]["bytes"]
    assert ck.num_parameters == info["model"]["n_params"] and len(ck.model) == info["model"]["n_param_leaves"]
    assert ck.optimizer["step"] == 123 and ck.optimizer["lr"] == 2e-4
    assert ck.ema["decay"] == info["model"]["ema_rate"] and ck.ema["num_updates"] is None
    # every array as the original decoder reads it: the float64 sum of each leaf
    sums = layout(name)["leaf_sums_float64"]
    trees = {"optimizer/target/": ck.model, "params_ema/": ck.ema["params"]}
    for prefix, tree in trees.items():
        for k, v in tree.items():
            assert float(v.double().sum()) == pytest.approx(sums[prefix + k], rel=1e-12, abs=1e-9), k
    for k in ck.model:
        assert float(ck.optimizer["grad_ema"][k].double().sum()) == pytest.approx(
            sums[f"optimizer/state/param_states/{k}/grad_ema"], rel=1e-12, abs=1e-12)
        assert float(ck.optimizer["grad_sq_ema"][k].double().sum()) == pytest.approx(
            sums[f"optimizer/state/param_states/{k}/grad_sq_ema"], rel=1e-12, abs=1e-15)


def test_a_work_directory_means_its_newest_snapshot(tmp_path):
    ck = C.load_checkpoint(workdir(VP))          # <workdir>/checkpoints/checkpoint_123
    assert ck.path == ckpt_path(VP) and ck.format == "flax"
    d = tmp_path / "wd" / "checkpoints"
    d.mkdir(parents=True)
    for n in (2, 10):                            # numeric order, not string order
        (d / f"checkpoint_{n}").write_bytes(open(ckpt_path(VE if n == 10 else VP), "rb").read())
    assert C.load_checkpoint(str(tmp_path / "wd")).path == str(d / "checkpoint_10")
    with pytest.raises(C.NotACheckpointError, match="is a directory"):
        C.load_checkpoint(str(tmp_path))


def test_format_comes_from_the_content_not_the_name(tmp_path):
    p = tmp_path / "weights.pth"                 # a flax file named like a torch one
    p.write_bytes(open(ckpt_path(VE), "rb").read())
    assert C.load_checkpoint(str(p)).format == "flax"


@pytest.mark.parametrize("name", FLAX_FIXTURES)
def test_inspect_reports_format_step_rates_and_the_preset(name):
    info = C.inspect_checkpoint(ckpt_path(name))
    assert info["format"] == "flax" and info["container"] == "msgpack" and info["step"] == 123
    assert info["parameter_count"] == meta(name)["model"]["n_params"]
    assert info["ema"]["decay"] == meta(name)["model"]["ema_rate"]
    assert info["optimizer"]["lr"] == 2e-4 and info["adam_step"] == 123
    assert {"preset": PRESET[name], "overrides": {"nf": 8}} in info["matching_presets"]
    assert all(m["overrides"] == {"nf": 8} for m in info["matching_presets"])
    assert info["globals"] == []                 # no pickle anywhere


# ---------------------------------------------------------------------------------------------
# the mapping

@pytest.mark.parametrize("name", FLAX_FIXTURES)
def test_converted_state_dict_equals_the_reference_exactly(name):
    net = _net(name)
    ck = C.flax_to_torch(C.load_checkpoint(ckpt_path(name)), net)
    ref = torch_state_dict(name)
    assert ck.format == "score_sde" and ck.origin == "flax"
    assert sorted(ck.model) == sorted([k[len("params/"):] for k in ref if k.startswith("params/")] + ["sigmas"])
    for k, v in ck.model.items():
        if k == "sigmas":
            assert torch.equal(v, net.sigmas)     # computed from the config
            continue
        assert v.dtype == torch.float32 and np.array_equal(v.numpy(), ref["params/" + k]), k
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert len(ck.ema["shadow_params"]) == len(trainable)
    for n, s in zip(trainable, ck.ema["shadow_params"]):
        assert np.array_equal(s.numpy(), ref["params_ema/" + n]), n


@pytest.mark.parametrize("kind,preset", [
    ("vp_ddpmpp_nf128", "vp/cifar10_ddpmpp_continuous"),
    ("ve_ncsnpp_nf128", "ve/cifar10_ncsnpp_continuous"),
    ("subvp_ddpmpp_deep_nf128", "subvp/cifar10_ddpmpp_deep_continuous"),
    ("ve_ncsnpp_deep_nf128", "ve/cifar10_ncsnpp_deep_continuous"),
])
def test_full_size_maps_cover_every_leaf_onto_the_manifest(kind, preset):
    from _ckpt_helpers import load_manifest, require_reference
    ref = mapping(kind)
    arch = ARCHITECTURES[preset]
    with meta_init():
        net = build_network(arch.model, arch.data)
    names = C.flax_names(net)
    ours = {leaf.path: (key, leaf.shape) for key, leaf in names.items()}
    theirs = {m["flax"]: (m["torch"], tuple(m["flax_shape"])) for m in ref["mapping"]}
    assert len(ours) == ref["flax_param_leaves"] and ours == theirs
    if "flax_tree" in ref:                       # the shallow configs list the tree itself too
        assert {e["path"]: tuple(e["shape"]) for e in ref["flax_tree"]} == C.flax_layout(net)
    order = [t for t, _ in sorted(ref["top_level_to_torch_index"].items(), key=lambda kv: kv[1])]
    assert order == ref["top_level_call_order"]
    manifest = load_manifest(os.path.join(require_reference(), ref["torch_manifest"]))
    keys = {k.replace("module.", "", 1): tuple(shape) for k, shape, _ in manifest["model_state_dict"]}
    sd = net.state_dict()
    mapped = {key: tuple(sd[key].shape) for key in names}
    assert set(keys) - set(mapped) == {"sigmas"}
    assert all(keys[k] == s for k, s in mapped.items())
    assert sum(int(np.prod(s)) for s in C.flax_layout(net).values()) == ref["flax_param_count"]


# ---------------------------------------------------------------------------------------------
# the original's numbers

@pytest.mark.parametrize("name", FLAX_FIXTURES)
def test_outputs_and_scores_reproduce_the_jax_code(name):
    m, _ = model_and_data(name)
    net = _net(name)
    ck = C.load_checkpoint(ckpt_path(name))
    io = arrays(name)
    x, t = _nchw(io["x"]), torch.from_numpy(io["t"])
    sm = score_model(net, sde_of(name), m)
    assert np.allclose(sm.labels(t).numpy(), io["labels"], rtol=1e-6, atol=0)
    for weights, suffix in (("model", "_params"), ("ema", "_params_ema")):
        C.restore(net, ck, weights=weights)
        net.eval()
        with torch.no_grad():
            out = _nhwc(net(x, torch.from_numpy(io["labels"])))
            score = _nhwc(sm.score(x, t))
        assert _per_sample(out, io["net_out" + suffix]).max() <= TOL_OUT, weights
        err = _per_sample(score, io["score" + suffix])
        if name == VE:
            assert err.max() <= TOL_OUT
            continue
        std = sm.sde.marginal_std(t).numpy()
        c = -0.25 * io["t"] ** 2 * (20 - 0.1) - 0.5 * io["t"] * 0.1
        branch = np.abs(c) <= 1e-3
        assert branch[1] and err[~branch].max() <= TOL_OUT and err[branch].max() <= TOL_SCORE_VP_BRANCH
        # measured: the whole difference is the std formula — rescaled to score_flow's std, the
        # score agrees to float32
        rescaled = score * (std / io["marginal_std"])[:, None, None, None]
        assert _per_sample(rescaled, io["score" + suffix]).max() <= TOL_OUT
        assert 1.5e-4 < err[1] < 1.7e-4
        # with score_flow's own std (sde.stdFormula "scoreflow", the scoreflow/* presets) the score
        # is the JAX code's to float32 at every t
        s = meta(name)["sde"]
        theirs = score_model(net, VPSDE(s["beta_min"], s["beta_max"], s["N"], std_formula="scoreflow"), m)
        with torch.no_grad():
            exact = _nhwc(theirs.score(x, t))
        assert _per_sample(exact, io["score" + suffix]).max() <= TOL_OUT


def test_ema_weights_of_a_frozen_parameter_are_used_for_evaluation(tmp_path):
    """If params_ema's Fourier W differed from the raw one (it never does in files the original
    wrote: W is frozen), evaluation with the EMA weights takes the EMA copy, and says so."""
    tree = read_tree(ckpt_path(VE))
    tree["params_ema"]["GaussianFourierProjection_0"]["W"] = \
        tree["params_ema"]["GaussianFourierProjection_0"]["W"] * 2
    path = write_tree(str(tmp_path / "ck"), tree)
    net = _net(VE)
    info = C.restore(net, C.load_checkpoint(path), weights="ema")
    assert any("frozen parameter" in w and "all_modules.0.W" in w for w in info.warnings)
    assert np.array_equal(net.all_modules[0].W.detach().numpy(),
                          tree["params_ema"]["GaussianFourierProjection_0"]["W"])


# ---------------------------------------------------------------------------------------------
# conversion to the PyTorch Score SDE format

@pytest.mark.parametrize("name", FLAX_FIXTURES)
def test_convert_writes_the_pytorch_layout_that_plain_torch_load_reads(tmp_path, name):
    out = C.convert(ckpt_path(name), str(tmp_path / "checkpoint_0.pth"), to="score_sde")
    assert out.step == 123
    raw = torch.load(out.path, map_location="cpu")            # what score_sde_pytorch does
    assert list(raw) == ["optimizer", "model", "ema", "step"] and raw["step"] == 123
    fresh = nn.DataParallel(_net(name))
    fresh.load_state_dict(raw["model"], strict=True)
    adam = torch.optim.Adam(fresh.parameters(), lr=2e-4)
    adam.load_state_dict(raw["optimizer"])
    assert raw["ema"]["num_updates"] is None and raw["ema"]["decay"] == meta(name)["model"]["ema_rate"]
    # the Adam moments and step of every trainable parameter; the frozen W has none
    flax = C.load_checkpoint(ckpt_path(name))
    net = fresh.module
    names = C.flax_names(net)
    for i, (n, p) in enumerate(net.named_parameters()):
        if not p.requires_grad:
            assert i not in raw["optimizer"]["state"]
            continue
        st = raw["optimizer"]["state"][i]
        leaf = names[n]
        assert float(st["step"]) == 123
        assert torch.equal(st["exp_avg"], C.flax_map.to_torch_tensor(flax.optimizer["grad_ema"][leaf.path], leaf.transform))
        assert torch.equal(st["exp_avg_sq"], C.flax_map.to_torch_tensor(flax.optimizer["grad_sq_ema"][leaf.path], leaf.transform))
    # and it scores identically to the flax file
    io = arrays(name)
    x, lab = _nchw(io["x"]), torch.from_numpy(io["labels"])
    a, b = _net(name), _net(name)
    C.restore(a, flax, weights="ema")
    C.restore(b, C.load_checkpoint(out.path), weights="ema")
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x, lab), b(x, lab))


def test_convert_to_safetensors_from_flax(tmp_path):
    out = C.convert(ckpt_path(VP), str(tmp_path / "vp.safetensors"), to="safetensors")
    back = C.load_checkpoint(out.path)
    assert back.format == "state_dict" and back.step == 123
    ref = torch_state_dict(VP)
    net = _net(VP)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    for n in trainable:                           # the EMA weights by default
        assert np.array_equal(back.model[n].numpy(), ref["params_ema/" + n])


# ---------------------------------------------------------------------------------------------
# fine-tuning from a flax state, with every loss

def _cifar(tmp_path):
    from test_train import write_cifar
    return write_cifar(tmp_path / "data")


LOSSES = {
    "dsm": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"}],
    "dsm-likelihood-is": [{"kind": "dsm", "weighting": "likelihood", "importanceSampling": True,
                           "reduce": "mean"}],
    "order2": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"},
               {"kind": "highOrder", "order": 2}],
    "order3": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"},
               {"kind": "highOrder", "order": 3}],
    "score-fpe": [{"kind": "dsm", "weighting": "likelihood", "reduce": "mean"},
                  {"kind": "scoreFpe", "mode": "both", "alpha": 0.15, "beta": 0.01, "dt": "autodiff"}],
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_finetune_two_steps_from_the_vp_fixture(tmp_path, loss):
    import _resolve
    from fpdiff import train as T
    exp = _resolve.experiment({
        "name": "ft/flax_vp",
        "sde": {"kind": "vp"},
        "model": {"kind": "ddpmpp", "nf": 8},
        "data": {"kind": "cifar10", "path": _cifar(tmp_path), "centered": True},
        "loss": {"terms": LOSSES[loss]},
        "optim": {"kind": "adam", "lr": 2e-4, "warmup": 5000, "gradClip": 1},
        "training": {"batchSize": 2, "nIters": 125, "logFreq": 1, "snapshotFreq": 1000,
                     "snapshotFreqForPreemption": 1000, "seed": 7},
    })
    events = []
    state, res = T.train(exp, str(tmp_path / "run"), init=ckpt_path(VP), callback=events.append)
    assert res.status == "completed" and res.steps == 2 and state.step == 125
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [e["step"] for e in metrics] == [123, 124] and all(np.isfinite(e["loss"]) for e in metrics)
    # the EMA continues at the file's constant rate, as the JAX code did (no update count)
    assert state.ema.num_updates is None and state.ema.decay == 0.9999
    adam = state.optimizer.state_dict()["state"]
    assert {float(s["step"]) for s in adam.values()} == {125.0}
    saved = C.load_checkpoint(C.snapshot_path(str(tmp_path / "run"), 0))
    assert saved.format == "score_sde" and saved.step == 125 and saved.ema["num_updates"] is None


def test_finetune_from_flax_equals_finetune_from_its_conversion(tmp_path):
    """The flax state and its PyTorch conversion start the same run: same losses, same weights."""
    import _resolve
    from fpdiff import train as T
    converted = C.convert(ckpt_path(VP), str(tmp_path / "converted.pth"), to="score_sde").path
    wire = {
        "name": "ft/flax_vp", "sde": {"kind": "vp"}, "model": {"kind": "ddpmpp", "nf": 8},
        "data": {"kind": "cifar10", "path": _cifar(tmp_path), "centered": True},
        "loss": {"terms": LOSSES["dsm"]},
        "optim": {"kind": "adam", "lr": 2e-4, "warmup": 5000, "gradClip": 1},
        "training": {"batchSize": 2, "nIters": 125, "logFreq": 1, "snapshotFreq": 1000,
                     "snapshotFreqForPreemption": 1000, "seed": 7, "deterministic": True},
    }
    runs = []
    for init, tag in ((ckpt_path(VP), "a"), (converted, "b")):
        events = []
        state, _ = T.train(_resolve.experiment(wire), str(tmp_path / tag), init=init,
                           callback=events.append)
        runs.append((state, [e["loss"] for e in events if e["type"] == "metrics"]))
    (a, la), (b, lb) = runs
    assert la == lb
    for p, q in zip(a.network.parameters(), b.network.parameters()):
        assert torch.equal(p, q)
    for s, r in zip(a.ema.shadow_params, b.ema.shadow_params):
        assert torch.equal(s, r)


def test_restore_into_an_ema_and_adam_object():
    net = _net(VP)
    opt = torch.optim.Adam(net.parameters(), lr=1.0, betas=(0.5, 0.9), eps=1e-6)
    ema = EMA(net.parameters(), decay=0.5)
    ck = C.load_checkpoint(ckpt_path(VP))
    info = C.restore(net, ck, weights="model", optimizer=opt, ema=ema)
    assert info.step == 123 and info.ema_loaded and info.optimizer_loaded
    g = opt.param_groups[0]
    assert g["lr"] == 2e-4 and g["betas"] == (0.5, 0.9) and g["eps"] == 1e-6   # the optimiser's own
    assert ema.decay == 0.9999 and ema.num_updates is None


# ---------------------------------------------------------------------------------------------
# errors a researcher can act on

def test_wrong_architecture_lists_flax_leaves_and_the_matching_preset():
    with pytest.raises(C.ArchitectureMismatchError) as ei:
        C.restore(_net(VE), C.load_checkpoint(ckpt_path(VP)))
    msg = str(ei.value)
    assert "missing flax leaf(s): GaussianFourierProjection_0/W" in msg
    assert "shape mismatch(es): Conv_0/kernel file [3, 3, 3, 8] vs network [3, 3, 3, 8]" not in msg
    assert "shape mismatch(es)" in msg and "Dense_0/kernel file [8, 32] vs network [16, 32]" in msg
    assert "vp/cifar10_ddpmpp_continuous with model.nf=8" in msg
    d = ei.value.to_dict()
    assert {"preset": "vp/cifar10_ddpmpp_continuous", "overrides": {"nf": 8}} in d["matching_presets"]
    # the same width mismatch: the other nf is named
    wide = build_network(*model_and_data(VP, nf=16))
    with pytest.raises(C.ArchitectureMismatchError, match="shape mismatch"):
        C.restore(wide, C.load_checkpoint(ckpt_path(VP)))


def test_truncated_file(tmp_path):
    data = open(ckpt_path(VP), "rb").read()
    for cut in (len(data) // 2, len(data) - 1, 100):
        p = tmp_path / f"cut{cut}"
        p.write_bytes(data[:cut])
        with pytest.raises(C.CorruptCheckpointError, match="truncated|not a readable"):
            C.load_checkpoint(str(p))


def test_trailing_bytes_are_damage(tmp_path):
    p = tmp_path / "ck"
    p.write_bytes(open(ckpt_path(VP), "rb").read() + b"\x00\x01")
    with pytest.raises(C.CorruptCheckpointError, match="2 bytes follow the state"):
        C.load_checkpoint(str(p))


def test_random_bytes_after_a_map_header(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "ck"
    p.write_bytes(b"\x87\xa4step" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises((C.CorruptCheckpointError, C.NotACheckpointError)):
        C.load_checkpoint(str(p))


def test_oversized_file_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setenv("FPD_MAX_CHECKPOINT_BYTES", str(1 << 20))
    with pytest.raises(C.NotACheckpointError, match="more than any checkpoint fpdiff reads"):
        C.load_checkpoint(ckpt_path(VP))


@pytest.mark.parametrize("case", ["shape-vs-bytes", "dtype", "object-dtype", "ext-code", "deep",
                                  "int-key", "missing-field", "deq-state", "model-state", "bad-step"])
def test_malformed_states_give_specific_errors(tmp_path, case):
    import msgpack
    tree = read_tree(ckpt_path(VP))
    raw = None
    if case == "shape-vs-bytes":       # an array whose shape needs more bytes than it holds
        payload = msgpack.packb([[1 << 20, 1 << 10], "float32", b"\0" * 64], use_bin_type=True)
        tree["params_ema"]["Conv_0"]["bias"] = msgpack.ExtType(1, payload)
        match = "needs 4294967296 bytes, the file holds 64"
    elif case == "dtype":
        tree["params_ema"]["Conv_0"]["bias"] = ext_array(np.zeros(8, np.float32), name="float80")
        match = "dtype b'float80' is not one of"
    elif case == "object-dtype":
        tree["params_ema"]["Conv_0"]["bias"] = ext_array(np.zeros(8, np.float32), name="object")
        match = "dtype b'object'"
    elif case == "ext-code":
        tree["rng"] = msgpack.ExtType(42, b"\0")
        match = "unsupported msgpack extension type 42"
    elif case == "deep":                # maps nested 100,000 deep
        raw = b"\x81\xa4step" + b"\x81\xa1a" * 100_000 + b"\x80"
        match = "not a readable flax checkpoint"
    elif case == "int-key":
        raw = b"\x82\xa4step\x00" + msgpack.packb(1) + b"\x00"
        match = "not a readable flax checkpoint"
    elif case == "missing-field":
        del tree["params_ema"]
        match = "missing field\\(s\\) params_ema"
    elif case == "deq-state":
        tree["ema_train_bpd"] = np.zeros((), np.float32)
        match = "Flow\\+\\+ dequantizer"
    elif case == "model-state":
        tree["model_state"] = {"batch_stats": {"x": np.zeros(2, np.float32)}}
        match = "model_state"
    else:
        tree["step"] = np.array(-5, np.int32)
        match = "field 'step' is not a step: it must not be negative"
    p = tmp_path / "ck"
    if raw is not None:
        p.write_bytes(raw)
    else:
        write_tree(str(p), tree)   # ndarrays are encoded; ExtType values pass through as they are
    with pytest.raises(C.CheckpointError, match=match):
        C.load_checkpoint(str(p))


def test_chunked_arrays_are_joined(tmp_path):
    tree = read_tree(ckpt_path(VP))
    kernel = tree["optimizer"]["target"]["Conv_0"]["kernel"]
    tree["optimizer"]["target"]["Conv_0"]["kernel"] = chunked(kernel, chunk=50)
    p = write_tree(str(tmp_path / "ck"), tree)
    ck = C.load_checkpoint(p)
    assert np.array_equal(ck.model["Conv_0/kernel"].numpy(), kernel)
    tree["optimizer"]["target"]["Conv_0"]["kernel"] = chunked(kernel[..., :4], chunk=50)
    tree["optimizer"]["target"]["Conv_0"]["kernel"]["shape"] = {str(i): d for i, d in enumerate(kernel.shape)}
    p = write_tree(str(tmp_path / "bad"), tree)
    with pytest.raises(C.CorruptCheckpointError, match="chunks hold 108 elements"):
        C.load_checkpoint(p)


# ---------------------------------------------------------------------------------------------
# names where flax counts modules that have no parameters

def test_flax_counts_the_parameter_free_pyramid_resamplers():
    """With ddpm blocks (Downsample / Upsample layers with a conv) and the input_skip / output_skip
    pyramids (Downsample / Upsample without one), flax numbers both kinds in one sequence per class,
    in call order: level ℓ's layer is Downsample_{2ℓ}, its pyramid resampler Downsample_{2ℓ+1}
    (read from the original flax NCSNpp.__call__; no flax file of such a config was at hand)."""
    net = NCSNpp(image_size=16, nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(),
                 resblock_type="ddpm", fir=False, progressive="output_skip",
                 progressive_input="input_skip")
    paths = {leaf.path.split("/")[0] for leaf in C.flax_names(net).values()}
    assert {"Downsample_0", "Downsample_2"} <= paths and not {"Downsample_1", "Downsample_3"} & paths
    assert {"Combine_0", "Combine_1"} <= paths
    # decoder: the lowest level has no pyramid upsampling, then its own Upsample (a conv) is
    # Upsample_0; the next level's pyramid Upsample (none) is Upsample_1, its own Upsample_2
    assert {"Upsample_0", "Upsample_2"} <= paths and "Upsample_1" not in paths


@pytest.mark.original
@pytest.mark.parametrize("name", FLAX_FIXTURES)
def test_converted_file_loads_strictly_into_score_sde_pytorch(tmp_path, name):
    """`convert --to score_sde` → score_sde_pytorch's own NCSNpp, DataParallel, strict=True, and
    its outputs are the JAX code's (needs FPD_ORIGINAL_SCORE_SDE; `npm run test:original`)."""
    from _ckpt_helpers import original_config, original_ncsnpp_class
    cls = original_ncsnpp_class()
    out = C.convert(ckpt_path(name), str(tmp_path / "checkpoint.pth"), to="score_sde")
    raw = torch.load(out.path, map_location="cpu")
    m, d = model_and_data(name)
    original = nn.DataParallel(cls(original_config(m, d)))
    original.load_state_dict(raw["model"], strict=True)
    original.eval()
    io = arrays(name)
    with torch.no_grad():
        got = _nhwc(original(_nchw(io["x"]), torch.from_numpy(io["labels"])))
    assert _per_sample(got, io["net_out_params"]).max() <= TOL_OUT

"""Original-format checkpoints: fixtures reproduced, round trips, atomic saves, safe loading, errors."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn

from fpdiff import checkpoints as C
from fpdiff import safe_pickle as SP
from fpdiff.checkpoints import torch_file as TF
from fpdiff.models import EMA, DDPMpp, build_network

from _ckpt_helpers import (FIXTURES, fixture_configs, fixture_meta, fixture_paths, labels_by_rule,
                           rel_err, score_by_rule, sde_cfg)

TOL = 1e-5


def _scorer(net, meta, model_cfg):
    """(labels_fn, score_fn) from fpdiff.score / fpdiff.sde, or the fixture's stated rule."""
    try:
        from fpdiff.score import score_model
    except ImportError:  # pragma: no cover - the score module is another area's
        return (lambda t: labels_by_rule(meta, t),
                lambda x, t: score_by_rule(meta, net(x, labels_by_rule(meta, t)), t))
    sm = score_model(net, sde_cfg(meta), model_cfg)
    return sm.sde.label, sm.score


# ---------------------------------------------------------------------------------------------
# the fixtures produced by the original code

@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_loads_strictly_and_reproduces_original_outputs(name):
    meta = fixture_meta(name)
    ckpt_path, io_path = fixture_paths(name)
    model_cfg, data_cfg = fixture_configs(name)
    ck = C.load_checkpoint(ckpt_path)
    ref, _ = C.safe_torch_load(io_path)
    assert ck.format == "score_sde" and ck.step == meta["checkpoint"]["step"]
    assert ck.sha256 == meta["checkpoint"]["sha256"]

    net = build_network(model_cfg, data_cfg)
    labels_fn, score_fn = _scorer(net, meta, model_cfg)
    assert rel_err(labels_fn(ref["t"]), ref["labels"]) <= 1e-6

    results = {}
    for weights, suffix in (("model", ""), ("ema", "_ema")):
        C.restore(net, ck, weights=weights)
        net.eval()
        with torch.no_grad():
            results["model_out" + suffix] = net(ref["x"], ref["labels"])
            results["score" + suffix] = score_fn(ref["x"], ref["t"])
    for key, value in results.items():
        assert value.shape == ref[key].shape
        err = rel_err(value, ref[key])
        assert err <= TOL, f"{key}: relative error {err:.2e}"
        scale = float(ref[key].abs().max())
        assert torch.allclose(value, ref[key], rtol=TOL, atol=TOL * scale), key


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_metadata_and_numpy_learning_rate(name):
    meta = fixture_meta(name)
    ckpt_path, _ = fixture_paths(name)
    ck = C.load_checkpoint(ckpt_path)
    lr = ck.optimizer["param_groups"][0]["lr"]
    assert isinstance(lr, np.float64) and float(lr) == meta["checkpoint"]["optimizer_lr_in_param_group"]
    assert ck.ema["decay"] == meta["checkpoint"]["ema_decay"]
    assert ck.ema["num_updates"] == meta["checkpoint"]["ema_num_updates"]
    assert len(ck.ema["shadow_params"]) == meta["num_shadow_params"]
    assert len(ck.model) == meta["num_state_dict_entries"]

    info = C.inspect_checkpoint(ckpt_path)
    assert info["step"] == meta["checkpoint"]["step"]
    assert info["parameter_count"] == meta["total_parameter_count"]
    assert info["ema"]["shadow_elements"] == meta["trainable_parameter_count"]
    assert info["optimizer"]["kind"] == "Adam" and info["optimizer"]["lr_type"] == "numpy.float64"
    base = meta["base_config"]
    assert {"preset": base, "overrides": {"nf": 8}} in info["matching_presets"]
    assert all(m["overrides"] == {"nf": 8} for m in info["matching_presets"])


# ---------------------------------------------------------------------------------------------
# saving

def _restored(name):
    model_cfg, data_cfg = fixture_configs(name)
    ckpt_path, _ = fixture_paths(name)
    ck = C.load_checkpoint(ckpt_path)
    net = build_network(model_cfg, data_cfg)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
    ema = EMA(net.parameters(), decay=model_cfg.ema_rate)
    C.restore(net, ck, weights="model", optimizer=opt, ema=ema)
    return net, opt, ema, ck


def _assert_same_tensors(a, b, where="root"):
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", FIXTURES)
def test_save_then_load_is_bitwise_identical(tmp_path, name):
    net, opt, ema, ck = _restored(name)
    saved = C.save_checkpoint(str(tmp_path / "ck.pth"), C.checkpoint_state(net, opt, ema, ck.step))
    assert saved.step == ck.step and saved.sha256 == C.sha256_file(saved.path)
    assert saved.bytes == os.path.getsize(saved.path)
    back = C.load_checkpoint(saved.path)
    _assert_same_tensors(back.model, ck.model, "model")
    _assert_same_tensors(back.ema["shadow_params"], ck.ema["shadow_params"], "ema")
    assert (back.ema["decay"], back.ema["num_updates"]) == (ck.ema["decay"], ck.ema["num_updates"])
    _assert_same_tensors(back.optimizer["state"], ck.optimizer["state"], "optimizer.state")
    g_back, g_ref = back.optimizer["param_groups"][0], ck.optimizer["param_groups"][0]
    assert g_back["params"] == g_ref["params"] and g_back["lr"] == float(g_ref["lr"])
    assert back.step == ck.step
    # and a second save of the reloaded state writes the same bytes
    net2, opt2, ema2, _ = _restored(name)
    again = C.save_checkpoint(str(tmp_path / "ck2.pth"), C.checkpoint_state(net2, opt2, ema2, ck.step))
    assert again.sha256 == saved.sha256


def test_saved_file_is_the_original_layout_for_plain_torch_load(tmp_path):
    name = "ve_ncsnpp_small_seed0"
    net, opt, ema, ck = _restored(name)
    path = C.save_checkpoint(str(tmp_path / "checkpoint_1.pth"),
                             C.checkpoint_state(net, opt, ema, ck.step)).path
    # our files hold tensors and plain Python values only (the NumPy lr became a float)
    assert not [g for g in C.inspect_file(path).globals if g.startswith(("numpy", "_codecs"))]
    raw = torch.load(path, map_location="cpu")     # exactly what the original restore_checkpoint does
    assert list(raw) == ["optimizer", "model", "ema", "step"] and isinstance(raw["step"], int)
    assert all(k.startswith("module.") for k in raw["model"])
    assert set(raw["ema"]) == {"decay", "num_updates", "shadow_params"}
    assert isinstance(raw["ema"]["shadow_params"], list)
    # what the original restore_checkpoint does: DataParallel model, Adam, EMA state
    model_cfg, data_cfg = fixture_configs(name)
    fresh = nn.DataParallel(build_network(model_cfg, data_cfg))
    fresh.load_state_dict(raw["model"], strict=True)
    adam = torch.optim.Adam(fresh.parameters(), lr=2e-4)
    adam.load_state_dict(raw["optimizer"])
    assert len(raw["ema"]["shadow_params"]) == sum(p.requires_grad for p in fresh.parameters())
    # the first parameter is the frozen Fourier W: no Adam state for index 0
    assert 0 not in raw["optimizer"]["state"] and 1 in raw["optimizer"]["state"]


def test_restored_optimizer_can_take_a_step():
    net, opt, ema, ck = _restored("vp_ddpmpp_small_seed0")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    net.train()
    loss = net(x, torch.tensor([10.0, 500.0])).pow(2).mean()
    loss.backward()
    opt.step()
    ema.update(net.parameters())
    assert ema.num_updates == ck.ema["num_updates"] + 1


def test_atomic_save_keeps_previous_file_when_interrupted(tmp_path, monkeypatch):
    net = DDPMpp(nf=8, ch_mult=(1, 2), num_res_blocks=1, image_size=16)
    target = str(tmp_path / "checkpoint.pth")
    first = C.save_checkpoint(target, C.checkpoint_state(net, step=1))

    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        buf = io.BytesIO()
        real_save(obj, buf, *a, **k)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])   # half written, then "killed"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(target, C.checkpoint_state(net, step=2))
    monkeypatch.setattr(torch, "save", real_save)
    assert C.sha256_file(target) == first.sha256
    assert os.listdir(tmp_path) == ["checkpoint.pth"]          # no temporary file left behind
    assert C.load_checkpoint(target).step == 1


def test_run_directory_layout(tmp_path):
    net = DDPMpp(nf=8, ch_mult=(1, 2), num_res_blocks=1, image_size=16)
    state = C.checkpoint_state(net, step=7)
    a = C.save_run_checkpoint(str(tmp_path), state, k=3)
    b = C.save_run_checkpoint(str(tmp_path), state, meta=True)
    assert a.path == str(tmp_path / "checkpoints" / "checkpoint_3.pth")
    assert b.path == str(tmp_path / "checkpoints-meta" / "checkpoint.pth")
    assert a.sha256 == b.sha256 and a.step == 7
    with pytest.raises(ValueError):
        C.save_run_checkpoint(str(tmp_path), state)


def test_plain_state_dict_export_is_accepted(tmp_path):
    model_cfg, data_cfg = fixture_configs("vp_ddpmpp_small_seed0")
    ck = C.load_checkpoint(fixture_paths("vp_ddpmpp_small_seed0")[0])
    p = str(tmp_path / "export.pt")
    torch.save(dict(ck.model), p)
    plain = C.load_checkpoint(p)
    assert plain.format == "state_dict" and plain.ema is None
    net = build_network(model_cfg, data_cfg)
    C.restore(net, plain, weights="model")
    with pytest.raises(C.CheckpointError, match="no EMA"):
        C.restore(net, plain, weights="ema")


# ---------------------------------------------------------------------------------------------
# errors a researcher can act on

def test_truncated_file(tmp_path):
    src = fixture_paths("vp_ddpmpp_small_seed0")[0]
    data = open(src, "rb").read()
    p = tmp_path / "truncated.pth"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(C.CorruptCheckpointError, match="truncated or corrupt"):
        C.load_checkpoint(str(p))


def test_corrupted_bytes_inside_a_record(tmp_path):
    src = fixture_paths("vp_ddpmpp_small_seed0")[0]
    data = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as zf:
        info = [i for i in zf.infolist() if i.filename.endswith("data/100")][0]
    h = info.header_offset      # local header: name and extra-field lengths at bytes 26..29
    start = h + 30 + int.from_bytes(data[h + 26:h + 28], "little") + \
        int.from_bytes(data[h + 28:h + 30], "little")
    assert info.file_size >= 24
    data[start + 8: start + 24] = bytes(16)    # overwrite tensor bytes inside the record
    p = tmp_path / "corrupt.pth"
    p.write_bytes(bytes(data))
    with pytest.raises(C.CorruptCheckpointError, match="corrupt"):
        C.load_checkpoint(str(p))


@pytest.mark.parametrize("content,what", [
    (os.urandom(4096), "random bytes"),
    (b"", "empty"),
    (b"PK\x03\x04" + os.urandom(300), "zip header then junk"),
])
def test_not_a_checkpoint(tmp_path, content, what):
    p = tmp_path / "file.pth"
    p.write_bytes(content)
    err = C.CorruptCheckpointError if content.startswith(b"PK") else C.NotACheckpointError
    with pytest.raises(err):
        C.load_checkpoint(str(p))


def test_valid_torch_file_that_is_not_a_checkpoint(tmp_path):
    p = str(tmp_path / "list.pt")
    torch.save([1, 2, 3], p)
    with pytest.raises(C.NotACheckpointError, match="not a Score SDE checkpoint"):
        C.load_checkpoint(p)
    q = str(tmp_path / "ts.pt")
    torch.jit.script(nn.Linear(2, 2)).save(q)
    with pytest.raises(C.NotACheckpointError, match="TorchScript"):
        C.load_checkpoint(q)


def test_checkpoint_of_another_architecture_names_its_preset():
    model_cfg, data_cfg = fixture_configs("ve_ncsnpp_small_seed0")
    net = build_network(model_cfg, data_cfg)
    ck = C.load_checkpoint(fixture_paths("vp_ddpmpp_small_seed0")[0])
    with pytest.raises(C.ArchitectureMismatchError) as ei:
        C.restore(net, ck)
    e = ei.value
    msg = str(e)
    assert "missing key(s): all_modules.0.W" in msg
    assert "unexpected key(s)" in msg and "shape mismatch(es)" in msg
    assert "vp/cifar10_ddpmpp_continuous with model.nf=8" in msg
    assert "subvp/cifar10_ddpmpp_continuous with model.nf=8" in msg
    d = e.to_dict()
    assert d["code"] == "architecture_mismatch" and d["counts"]["missing"] > 0
    assert {"preset": "vp/cifar10_ddpmpp_continuous", "overrides": {"nf": 8}} in d["matching_presets"]


def test_full_size_layout_matches_preset_exactly():
    from fpdiff.models import architecture, meta_init
    arch = architecture("ve/cifar10_ncsnpp_deep_continuous")
    with meta_init():
        net = build_network(arch.model, arch.data)
    matches = C.match_presets(C.layout_of(net.state_dict()))
    assert matches == [{"preset": "ve/cifar10_ncsnpp_deep_continuous", "overrides": {}}]


# ---------------------------------------------------------------------------------------------
# safe loading: a malicious global is refused and never runs

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_files(tmp_path):
    marker = tmp_path / "pwned"
    files = {}
    for proto in (2, 4):
        p = tmp_path / f"evil_zip_p{proto}.pth"
        torch.save({"model": {"w": torch.zeros(2)}, "step": _Evil(marker)}, str(p), pickle_protocol=proto)
        files[f"zip-protocol-{proto}"] = p
    p = tmp_path / "evil_legacy.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "x": _Evil(marker)}, str(p),
               _use_new_zipfile_serialization=False)
    files["legacy"] = p
    p = tmp_path / "evil_raw.pkl"
    p.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    files["raw-pickle"] = p
    return marker, files


def test_malicious_global_is_refused_without_running(tmp_path):
    marker, files = _evil_files(tmp_path)
    for kind, p in files.items():
        with pytest.raises(C.UnsafeCheckpointError) as ei:
            C.load_checkpoint(str(p))
        msg = str(ei.value)
        assert ".system" in msg and "nothing in the file was executed" in msg, kind
        assert ei.value.code == "unsafe_checkpoint"
        assert not marker.exists(), f"{kind}: the payload ran"


def test_restricted_unpickler_refuses_even_without_the_scan(tmp_path):
    marker, files = _evil_files(tmp_path)
    with pytest.raises(SP.UnsafePickleError):
        SP.SafeUnpickler(io.BytesIO(files["raw-pickle"].read_bytes())).load()
    for kind in ("zip-protocol-2", "zip-protocol-4", "legacy"):
        reader = TF.read_legacy if kind == "legacy" else TF.read_zip
        with open(files[kind], "rb") as fh, pytest.raises(SP.UnsafePickleError, match="system"):
            reader(fh, str(files[kind]))
    assert not marker.exists()


def test_only_numeric_numpy_scalars_are_allowed(tmp_path):
    p = str(tmp_path / "obj_dtype.pth")
    torch.save({"model": {"w": torch.zeros(1)}, "step": 1, "x": np.dtype("O")}, p)
    with pytest.raises(C.UnsafeCheckpointError, match="numeric"):
        C.load_checkpoint(p)
    # numeric arrays are data under the project's one allow-list (data batches need them); an
    # array where the step belongs is refused as a bad step, naming the field
    q = str(tmp_path / "array.pth")
    torch.save({"model": {"w": torch.zeros(1)}, "step": np.arange(3)}, q)
    with pytest.raises(C.CorruptCheckpointError, match="field 'step'"):
        C.load_checkpoint(q)
    r = str(tmp_path / "scalar.pth")
    torch.save({"model": {"w": torch.zeros(1)}, "step": np.int64(5), "lr": np.float32(0.5)}, r)
    ck = C.load_checkpoint(r)
    assert ck.step == 5


def test_scan_reports_globals_of_a_real_checkpoint():
    rep = C.inspect_file(fixture_paths("ve_ncsnpp_small_seed0")[0])
    assert rep.format == "zip"
    assert set(rep.globals) == {"_codecs.encode", "collections.OrderedDict",
                                "numpy.core.multiarray.scalar", "numpy.dtype", "torch.DoubleStorage",
                                "torch.FloatStorage", "torch._utils._rebuild_tensor_v2"}


def test_legacy_format_loads(tmp_path):
    ck = C.load_checkpoint(fixture_paths("vp_ddpmpp_small_seed0")[0])
    p = str(tmp_path / "legacy.pth")
    state = {"model": dict(ck.model), "ema": ck.ema, "optimizer": ck.optimizer, "step": ck.step}
    torch.save(state, p, _use_new_zipfile_serialization=False)
    back = C.load_checkpoint(p)
    assert back.file.format == "legacy"
    _assert_same_tensors(back.model, ck.model)
    assert isinstance(back.optimizer["param_groups"][0]["lr"], np.float64)


def test_convert_round_trip_through_safetensors(tmp_path):
    src = fixture_paths("ve_ncsnpp_small_seed0")[0]
    orig = C.load_checkpoint(src)
    a = C.convert(src, str(tmp_path / "a.safetensors"), to="safetensors")
    b = C.convert(src, str(tmp_path / "b.safetensors"), to="safetensors")
    assert a.sha256 == b.sha256 and a.step == 123                 # deterministic bytes
    plain = C.load_checkpoint(a.path)
    assert plain.file.format == "safetensors" and list(plain.model) == list(orig.model)
    back = C.convert(a.path, str(tmp_path / "back.pth"), to="score_sde")
    ck = C.load_checkpoint(back.path)
    assert ck.format == "score_sde" and ck.step == 123 and ck.ema["decay"] == 0.999
    # the exported EMA weights are the new raw weights and the new shadows
    trainable = [k for k in orig.model if k not in ("sigmas", "all_modules.0.W")]
    for k, s in zip(trainable, orig.ema["shadow_params"]):
        assert torch.equal(ck.model[k], s)
    assert all(torch.equal(x, y) for x, y in zip(ck.ema["shadow_params"], orig.ema["shadow_params"]))
    assert torch.equal(ck.model["all_modules.0.W"], orig.model["all_modules.0.W"])

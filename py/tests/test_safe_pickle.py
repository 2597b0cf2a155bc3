"""The project's one pickle allow-list (fpdiff.safe_pickle): nothing a file names can be mutated,
so a file made only of allow-listed names cannot poison the process (issue 11, item 2)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

from fpdiff import checkpoints as C
from fpdiff import data as D
from fpdiff import safe_pickle as SP

from _ckpt_helpers import fixture_paths

PY = os.path.join(os.path.dirname(__file__), "..")


def _torch_zip(path, pkl: bytes) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/version", "3\n")
    return str(path)


# BUILD with a slot state on the class torch.TypedStorage: setattr(TypedStorage, "size", torch.Size)
POISON_TYPED_STORAGE = b"\x80\x02ctorch\nTypedStorage\nN}X\x04\x00\x00\x00sizectorch\nSize\ns\x86b0}."
# BUILD with a dict state on what torch.FloatStorage resolves to: its element type becomes float64
POISON_STORAGE_KIND = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypectorch\nfloat64\nsb0}."


def _attempt_then_save(tmp_path, pkl: bytes) -> str:
    """In a fresh interpreter: load the file, then save and torch.load a checkpoint, then load a
    real fixture. Returns the script's output."""
    bad = _torch_zip(tmp_path / "poison.pth", pkl)
    good = fixture_paths("vp_ddpmpp_small_seed0")[0]
    script = textwrap.dedent(f"""
        import io, sys, torch
        sys.path.insert(0, {PY!r})
        from fpdiff import checkpoints as C
        try:
            C.load_checkpoint({bad!r})
            print("ACCEPTED")
        except C.CheckpointError as e:
            print("REFUSED", e.code)
        net = torch.nn.Linear(3, 2)
        saved = C.save_checkpoint({str(tmp_path / 'after.pth')!r}, C.checkpoint_state(net, step=4))
        raw = torch.load(saved.path, map_location="cpu")
        print("TORCH_LOAD", raw["step"], torch.equal(raw["model"]["module.weight"], net.weight))
        ck = C.load_checkpoint({good!r})
        print("FIXTURE", ck.model["all_modules.0.weight"].dtype, ck.step)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    return r.stdout + r.stderr


@pytest.mark.parametrize("pkl", [POISON_TYPED_STORAGE, POISON_STORAGE_KIND], ids=["TypedStorage", "FloatStorage"])
def test_a_poisoned_file_is_refused_and_later_saves_still_load(tmp_path, pkl):
    out = _attempt_then_save(tmp_path, pkl)
    assert "REFUSED unsafe_checkpoint" in out, out
    assert "TORCH_LOAD 4 True" in out, out
    assert "FIXTURE torch.float32 123" in out, out


def test_build_never_reaches_what_find_class_returns():
    # every allow-listed name resolves to a constructor function or an immutable constant
    assert not [k for k, v in SP.ALLOWED.items() if isinstance(v, type)]
    # BUILD / SETITEMS / APPEND on them are refused, whatever the state
    cases = {
        "BUILD on a storage type": POISON_STORAGE_KIND,
        "BUILD on OrderedDict's constructor": b"\x80\x02ccollections\nOrderedDict\n}X\x01\x00\x00\x00aK\x01sb.",
        "SETITEM on a dtype": b"\x80\x02ctorch\nfloat32\nX\x01\x00\x00\x00aK\x01s.",
        "APPEND on torch.Size": b"\x80\x02ctorch\nSize\nK\x01a.",
        "SETITEMS on numpy.dtype's constructor": b"\x80\x02cnumpy\ndtype\n(K\x01K\x02u.",
    }
    for what, pkl in cases.items():
        with pytest.raises(SP.UnsafePickleError, match="refused"):
            SP.safe_loads(pkl)
    # NEWOBJ and the extension registry are refused outright
    with pytest.raises(SP.UnsafePickleError, match="NEWOBJ"):
        SP.safe_loads(b"\x80\x02ccollections\nOrderedDict\n)\x81.")
    with pytest.raises(SP.UnsafePickleError, match="EXT1"):
        SP.safe_loads(b"\x80\x02\x82\x01.")


def test_numeric_arrays_build_and_other_arrays_do_not():
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    for proto in (2, 4, 5):
        back = SP.safe_loads(pickle.dumps({"a": arr, "s": np.float64(0.5)}, protocol=proto))
        assert np.array_equal(back["a"], arr) and back["s"] == 0.5
    for bad in (np.array(["x"], dtype=object), np.zeros(2, dtype=[("a", "i4")])):
        with pytest.raises(SP.UnsafePickleError):
            SP.safe_loads(pickle.dumps(bad))
    # a state whose bytes do not match its shape is refused before numpy sees it
    with pytest.raises(SP.UnsafePickleError, match="not the shape's raw bytes"):
        SP._check_array_state((1, (5,), np.dtype("f4"), False, b"\0" * 16))


def test_reads_never_ask_for_more_than_the_file_holds():
    # BINBYTES8 declaring 2**40 bytes in a 20-byte pickle
    pkl = b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"xy."
    with pytest.raises(pickle.UnpicklingError, match="declares 1099511627776 bytes"):
        SP.safe_loads(pkl)


def test_data_and_checkpoints_share_the_one_list():
    # the data reader goes through the same unpickler: a data file naming a storage type is refused
    # at BUILD exactly like a checkpoint
    with pytest.raises(D.DataError, match="refused BUILD"):
        D.restricted_load(io.BytesIO(POISON_STORAGE_KIND), where="batch")
    import inspect as pyinspect
    src = pyinspect.getsource(D)
    assert "class RestrictedUnpickler" not in src and "SafeUnpickler" in src
    assert SP.NUMERIC_KINDS == "biufc"
    # complex numbers now load in both (they differed: checkpoints 'biufc', data 'biuf')
    assert D.restricted_load(io.BytesIO(pickle.dumps({"c": np.complex64(1 + 2j)})))["c"] == 1 + 2j


def test_a_checkpoint_with_a_mutating_build_is_reported_as_unsafe(tmp_path):
    p = _torch_zip(tmp_path / "x.pth", POISON_STORAGE_KIND)
    with pytest.raises(C.UnsafeCheckpointError, match="refused BUILD"):
        C.load_checkpoint(p)
    # and the storage type still means float32 afterwards
    ck = C.load_checkpoint(fixture_paths("vp_ddpmpp_small_seed0")[0])
    assert ck.model["all_modules.0.weight"].dtype == torch.float32

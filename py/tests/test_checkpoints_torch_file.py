"""The torch.save reader's size checks (issue 11, item 9): a record may not inflate far beyond its
size in the file, a storage is read only as far as its tensors reach, a tensor may not reach past
its storage, and a legacy storage must fit in the file — before anything is allocated."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from fpdiff import checkpoints as C

PY = os.path.join(os.path.dirname(__file__), "..")


class _Storage:
    """Pickled as a persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)."""

    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class _Tensor:
    def __init__(self, storage: _Storage, size, stride, offset=0):
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _pickle(obj, proto=2) -> bytes:
    import io
    buf = io.BytesIO()
    _Pickler(buf, protocol=proto).dump(obj)
    return buf.getvalue()


def torch_zip(path, obj, records, *, deflate=False) -> str:
    """A torch.save-shaped zip: archive/data.pkl, archive/data/<key> (zeros of ``nbytes`` or the
    given bytes), written in 1 MiB pieces so a big record costs no memory to make."""
    comp = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compresslevel=1 if deflate else None) as zf:
        zf.writestr("archive/data.pkl", _pickle(obj))
        zf.writestr("archive/version", "3\n")
        for key, content in records.items():
            info = zipfile.ZipInfo(f"archive/data/{key}")
            info.compress_type = comp
            with zf.open(info, "w", force_zip64=True) as fh:
                if isinstance(content, (bytes, bytearray)):
                    fh.write(content)
                else:
                    zero = bytes(1 << 20)
                    for _ in range(content >> 20):
                        fh.write(zero)
                    fh.write(bytes(content & ((1 << 20) - 1)))
    return str(path)


def _in_subprocess(path: str) -> dict:
    """Load ``path`` in a fresh interpreter; its error (if any) and peak memory growth."""
    script = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {PY!r})
        from fpdiff import checkpoints as C
        import torch
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {{"error": None}}
        try:
            ck = C.load_checkpoint({path!r})
            out["loaded"] = {{k: list(v.shape) for k, v in ck.model.items()}}
        except Exception as e:
            out["error"] = [type(e).__name__, str(e)]
        out["grew_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        print(json.dumps(out))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    import json
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_zip_bomb_is_refused_before_it_inflates(tmp_path):
    # a 3-element tensor over a storage record that inflates 512 MiB from well under 1 MiB
    numel = (512 << 20) // 4
    s = _Storage("0", numel)
    path = torch_zip(tmp_path / "bomb.pth", {"model": {"w": _Tensor(s, (3,), (1,))}}, {"0": numel * 4},
                     deflate=True)
    assert os.path.getsize(path) < (4 << 20)
    res = _in_subprocess(path)
    assert res["error"] and res["error"][0] == "UnsafeCheckpointError", res
    assert "decompression bomb" in res["error"][1] and "archive/data/0" in res["error"][1]
    assert res["grew_mb"] < 100, res


def test_a_storage_is_read_only_as_far_as_its_tensors_reach(tmp_path):
    numel = 1 << 20                                   # 4 MiB stored, a view of 3 elements
    data = np.arange(numel, dtype=np.float32).tobytes()
    s = _Storage("0", numel)
    path = torch_zip(tmp_path / "view.pth", {"model": {"w": _Tensor(s, (3,), (2,), offset=5)}}, {"0": data})
    ck = C.load_checkpoint(path)
    assert ck.model["w"].tolist() == [5.0, 7.0, 9.0]


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    s = _Storage("0", 3)
    path = torch_zip(tmp_path / "past.pth", {"model": {"w": _Tensor(s, (10,), (1,))}}, {"0": bytes(12)})
    with pytest.raises(C.CorruptCheckpointError, match="needs 40 bytes but the storage holds 12"):
        C.load_checkpoint(path)


def test_a_record_declaring_other_bytes_than_its_storage_is_refused(tmp_path):
    s = _Storage("0", 3)
    path = torch_zip(tmp_path / "size.pth", {"model": {"w": _Tensor(s, (3,), (1,))}}, {"0": bytes(16)})
    with pytest.raises(C.CorruptCheckpointError, match="holds 16 bytes, expected 3 x 4"):
        C.load_checkpoint(path)


def _legacy(path, numel: int, payload: bytes) -> str:
    """A legacy (torch < 1.6) file whose one storage declares ``numel`` floats."""
    s = _Storage("k0", numel)
    with open(path, "wb") as fh:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                                   "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(obj, fh, protocol=2)
        fh.write(_pickle({"model": {"w": _Tensor(s, (3,), (1,))}}))
        pickle.dump(["k0"], fh, protocol=2)
        fh.write(struct.pack("<q", numel))
        fh.write(payload)
    return str(path)


def test_legacy_storage_must_fit_in_the_file(tmp_path):
    ok = _legacy(tmp_path / "ok.pth", 3, np.arange(3, dtype=np.float32).tobytes())
    assert C.load_checkpoint(ok).model["w"].tolist() == [0.0, 1.0, 2.0]
    bad = _legacy(tmp_path / "bad.pth", 1 << 40, bytes(12))
    res = _in_subprocess(bad)
    assert res["error"] and res["error"][0] == "CorruptCheckpointError", res
    assert "declares 1099511627776 elements, more than the file holds" in res["error"][1]
    assert res["grew_mb"] < 100

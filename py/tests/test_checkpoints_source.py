"""What a checkpoint path may be (issue 11, item 10): a regular file or a work directory with
snapshots; a FIFO, a device or a bare directory is refused at once with what it is — never read
(a FIFO would block the reader forever)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fpdiff import checkpoints as C

PY = os.path.join(os.path.dirname(__file__), "..")


def _load_in_subprocess(path: str, timeout: float = 60) -> dict:
    """load_checkpoint(path) in a fresh interpreter with a deadline: a hang fails the test."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {PY!r})
        from fpdiff import checkpoints as C
        try:
            C.load_checkpoint({path!r})
            print(json.dumps({{"error": None}}))
        except Exception as e:
            print(json.dumps({{"error": [type(e).__name__, getattr(e, "code", None), str(e)]}}))
    """)
    try:
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path} did not return within {timeout} s")
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "checkpoint.pth"
    os.mkfifo(fifo)
    res = _load_in_subprocess(str(fifo))
    assert res["error"][:2] == ["NotACheckpointError", "not_a_checkpoint"]
    assert "is a FIFO (named pipe), not a checkpoint file" in res["error"][2]


def test_a_device_is_refused():
    with pytest.raises(C.NotACheckpointError, match="is a character device"):
        C.load_checkpoint("/dev/null")


def test_a_directory_without_snapshots_says_so(tmp_path):
    with pytest.raises(C.NotACheckpointError, match="is a directory, not a checkpoint file"):
        C.load_checkpoint(str(tmp_path))
    with pytest.raises(C.NotACheckpointError, match="is a directory"):
        C.inspect_checkpoint(str(tmp_path))


def test_a_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        C.load_checkpoint(str(tmp_path / "nope.pth"))


def test_a_work_directory_with_pytorch_snapshots(tmp_path):
    import torch
    net = torch.nn.Linear(2, 2)
    for k in (1, 3, 20):
        C.save_checkpoint(C.snapshot_path(str(tmp_path), k), C.checkpoint_state(net, step=k))
    assert C.load_checkpoint(str(tmp_path)).step == 20
    assert C.load_checkpoint(str(tmp_path / "checkpoints")).step == 20

"""Saving on a full disk (issue 11, item 11): the save says "no space left on <dir>", the previous
checkpoint stays intact and loadable, no temporary file is left behind.

The disk is real: a 1 MiB tmpfs mounted in a private mount namespace (``unshare -rm``, which an
unprivileged user may do where user namespaces are enabled; as root ``unshare -m``), so the
kernel itself answers ENOSPC. A file-size limit (RLIMIT_FSIZE) would give EFBIG instead, and a
mocked ``write`` would not exercise torch's own writer, which is what misreports the error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

PY = os.path.join(os.path.dirname(__file__), "..")


_NO_MOUNT = 97


def _on_small_disk(mount: str, script: str) -> dict:
    """Run ``script`` in a mount namespace where ``mount`` is a fresh 1 MiB tmpfs; its JSON line."""
    os.makedirs(mount, exist_ok=True)
    inner = (f"mount -t tmpfs -o size=1m tmpfs {mount} || exit {_NO_MOUNT}; "
             f"exec {sys.executable} -c \"$FPD_SCRIPT\"")
    env = dict(os.environ, FPD_SCRIPT=script)
    unshare = shutil.which("unshare")
    tried = []
    for prefix in (["-rm"], ["-m"]) if unshare else ():
        r = subprocess.run([unshare, *prefix, "sh", "-c", inner], capture_output=True, text=True,
                           env=env, timeout=300)
        if r.returncode in (_NO_MOUNT, 1) and not r.stdout.strip():
            tried.append(f"unshare {' '.join(prefix)}: {r.stderr.strip()[-200:]}")
            continue
        assert r.returncode == 0, f"the save script failed on the full disk (exit {r.returncode}):\n{r.stderr[-3000:]}"
        return json.loads(r.stdout.strip().splitlines()[-1])
    pytest.fail("this test needs a private 1 MiB tmpfs (unshare -rm with user namespaces, or root); "
                "could not mount one: " + "; ".join(tried or ["no unshare command"]))


def test_full_disk_is_reported_and_the_previous_checkpoint_survives(tmp_path):
    mount = str(tmp_path / "disk")
    script = textwrap.dedent(f"""
        import json, os, sys, torch
        sys.path.insert(0, {PY!r})
        from fpdiff import checkpoints as C
        d = {mount!r}
        path = os.path.join(d, "checkpoints-meta", "checkpoint.pth")
        small = C.save_checkpoint(path, C.checkpoint_state(torch.nn.Linear(3, 2), step=1))
        out = {{"small_bytes": small.bytes}}
        try:
            C.save_checkpoint(path, C.checkpoint_state(torch.nn.Linear(700, 700), step=2))
            out["error"] = None
        except Exception as e:
            out["error"] = [type(e).__name__, getattr(e, "code", None), str(e)]
        out["listing"] = sorted(os.listdir(os.path.dirname(path)))
        out["same_sha"] = C.sha256_file(path) == small.sha256
        out["step"] = C.load_checkpoint(path).step
        out["torch_load_step"] = torch.load(path)["step"]
        print(json.dumps(out))
    """)
    res = _on_small_disk(mount, script)
    meta_dir = os.path.join(mount, "checkpoints-meta")
    assert res["error"] is not None, res
    kind, code, message = res["error"]
    assert kind == "NoSpaceError" and code == "no_space"
    assert message.startswith(f"no space left on {meta_dir}: cannot write checkpoint.pth")
    assert "the previous checkpoint.pth is untouched" in message
    assert res["listing"] == ["checkpoint.pth"] and res["same_sha"]
    assert res["step"] == 1 and res["torch_load_step"] == 1

"""The run-directory lock (fpdiff.rundir): exclusive, names its holder, and released by the kernel
when the holder dies — however it dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from fpdiff import rundir

PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_second_lock_is_refused_with_the_holder_named_then_free_after_release(tmp_path):
    lock, holder = rundir.acquire(str(tmp_path / "run"), {"pid": 1234, "command": "fpd train"})
    assert lock is not None and holder is None
    again, holder = rundir.acquire(str(tmp_path / "run"), {"pid": 99})
    assert again is None
    assert holder["pid"] == 1234 and holder["worker"] == os.getpid() and holder["command"] == "fpd train"
    lock.release()
    third, _ = rundir.acquire(str(tmp_path / "run"), {"pid": 5})
    assert third is not None
    third.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = (f"import sys, time; sys.path.insert(0, {PY_DIR!r}); from fpdiff import rundir; "
            f"l, _ = rundir.acquire({str(tmp_path)!r}, {{'pid': 42}}); print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        lock, holder = rundir.acquire(str(tmp_path), {"pid": 7})
        assert lock is None and holder["pid"] == 42 and holder["worker"] == p.pid
        p.send_signal(signal.SIGKILL)
        p.wait()
        lock, holder = rundir.acquire(str(tmp_path), {"pid": 7})
        assert lock is not None and holder is None
        with open(tmp_path / rundir.LOCK_NAME) as fh:
            assert json.load(fh)["pid"] == 7
        lock.release()
    finally:
        p.kill()
        p.wait()

"""Where the worker listens (fpdiff.endpoint): a private ipc directory, shorter ones when $TMPDIR is
too long, TCP last (with a note); dead workers' directories removed, live ones never."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import zmq

from fpdiff import endpoint as E

PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _router():
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)

    def bind(address):
        sock.bind(address)
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    return sock, bind


def test_binds_ipc_in_a_private_locked_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("FPD_SOCKET_DIRS", str(tmp_path))
    sock, bind = _router()
    ep = E.bind(bind)
    try:
        assert ep.address.startswith(f"ipc://{tmp_path}/fpd-") and ep.note is None
        assert os.stat(ep.directory).st_mode & 0o777 == 0o700
        assert not E.is_dead_worker_dir(ep.directory)  # its lock is held
    finally:
        sock.close()
        ep.close()
    assert not os.path.exists(ep.directory or "")


def test_too_long_a_directory_is_skipped_then_tcp_with_a_note(tmp_path, monkeypatch):
    long = tmp_path / ("x" * 110)
    long.mkdir()
    monkeypatch.setenv("FPD_SOCKET_DIRS", f"{long}{os.pathsep}{tmp_path}")
    sock, bind = _router()
    ep = E.bind(bind)
    sock.close()
    ep.close()
    assert ep.address.startswith(f"ipc://{tmp_path}/fpd-")  # the shorter one
    monkeypatch.setenv("FPD_SOCKET_DIRS", str(long))
    sock, bind = _router()
    ep = E.bind(bind)
    sock.close()
    ep.close()
    assert ep.address.startswith("tcp://127.0.0.1:")
    assert "socket path over 107 bytes" in ep.note


_HOLDER = """
import os, sys, time
sys.path.insert(0, {py!r})
os.environ["FPD_SOCKET_DIRS"] = {parent!r}
import zmq
from fpdiff import endpoint as E
sock = zmq.Context.instance().socket(zmq.ROUTER)
def bind(a):
    sock.bind(a)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
ep = E.bind(bind)
print(ep.directory, flush=True)
time.sleep(600)
"""


def _holder(parent):
    p = subprocess.Popen([sys.executable, "-c", _HOLDER.format(py=PY_DIR, parent=str(parent))], stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().strip()


def test_dead_workers_directories_are_removed_and_live_ones_kept(tmp_path):
    live, live_dir = _holder(tmp_path)
    dead, dead_dir = _holder(tmp_path)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        assert os.path.isdir(dead_dir)  # a killed process cleans nothing up
        # a directory of an older worker (no lock taken) whose socket nobody serves any more
        legacy = tmp_path / "fpd-legacy1"
        legacy.mkdir(mode=0o700)
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(legacy / "w.sock"))
        s.close()
        # not a worker's: other files, or empty
        (tmp_path / "fpd-data").mkdir()
        (tmp_path / "fpd-data" / "w.sock").write_text("")
        (tmp_path / "fpd-data" / "notes.txt").write_text("keep me")
        (tmp_path / "fpd-empty").mkdir()
        removed = E.remove_dead_worker_dirs([str(tmp_path)])
        assert sorted(removed) == sorted([dead_dir, str(legacy)])
        assert os.path.isdir(live_dir)
        assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(live_dir), "fpd-data", "fpd-empty"])
    finally:
        live.kill()
        live.wait()

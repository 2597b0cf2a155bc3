"""Where the worker listens: an ``ipc://`` socket in a private directory, else loopback TCP.

Each worker makes a fresh 0700 directory ``fpd-XXXXXXXX`` holding only ``w.sock``, and holds an
exclusive ``flock`` on the directory itself for its whole life (taken before the socket exists), so
the kernel releases it when the worker dies, however it dies. A starting worker removes the
directories of dead workers: those whose lock it can take *and* whose socket refuses connections
(workers of older versions took no lock; the socket test alone decides for them). A directory
whose lock is held, which holds anything else, or which is still empty, is never touched.

A Unix socket path is limited to 107 bytes; when ``$TMPDIR`` is too long the worker tries shorter
private places (``$XDG_RUNTIME_DIR``, ``/tmp``) before falling back to TCP on 127.0.0.1 (said once
on stderr). Every transport is authenticated (see :mod:`fpdiff.auth`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import stat
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

PREFIX = "fpd-"
SOCKET_NAME = "w.sock"
MAX_IPC_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


@dataclass
class Endpoint:
    """A bound endpoint; ``close()`` removes the private directory (if any) and releases its lock."""

    address: str
    directory: Optional[str] = None
    lock_fd: Optional[int] = None
    note: Optional[str] = None  # why TCP was used, when it was

    def close(self) -> None:
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def candidate_dirs() -> list[str]:
    """Parents for the private directory, in order of preference, without repeats
    (``FPD_SOCKET_DIRS``, colon-separated, replaces the list)."""
    out: list[str] = []
    listed = os.environ.get("FPD_SOCKET_DIRS")
    preferred = listed.split(os.pathsep) if listed else (tempfile.gettempdir(), os.environ.get("XDG_RUNTIME_DIR"), "/tmp")
    for d in preferred:
        if d and d not in out and os.path.isdir(d):
            out.append(d)
    return out


def _fits(parent: str) -> bool:
    return len(os.path.join(parent, PREFIX + "X" * 8, SOCKET_NAME).encode()) <= MAX_IPC_PATH


def _make_private_dir(parent: str) -> tuple[str, int]:
    path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)  # created 0700: only this user connects
    os.chmod(path, 0o700)
    # locked while still empty, so a clean-up never sees an unlocked directory with a socket
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return path, fd


def bind(bind_fn: Callable[[str], str], forced: Optional[str] = None, ipc: bool = True) -> Endpoint:
    """Bind with ``bind_fn(address) -> bound address``: the forced address, else ipc in the first
    private directory that works, else ``tcp://127.0.0.1:*``."""
    if forced:
        return Endpoint(bind_fn(forced))
    tried: list[str] = []
    if ipc:
        for parent in candidate_dirs():
            if not _fits(parent):
                tried.append(f"{parent} (socket path over {MAX_IPC_PATH} bytes)")
                continue
            try:
                path, fd = _make_private_dir(parent)
            except OSError as exc:
                tried.append(f"{parent} ({exc.strerror or exc})")
                continue
            try:
                return Endpoint(bind_fn(f"ipc://{path}/{SOCKET_NAME}"), path, fd)
            except Exception as exc:  # zmq.ZMQError; the module stays free of zmq
                tried.append(f"{parent} ({exc})")
                Endpoint("", path, fd).close()
    note = "no private ipc socket directory could be used" + (f": {'; '.join(tried)}" if tried else " (no ipc transport)")
    return Endpoint(bind_fn("tcp://127.0.0.1:*"), note=note)


# ---------------------------------------------------------------------------------------------
# Clean-up of dead workers' directories


def _lock_is_free(path: str) -> bool:
    """True when no live process holds the flock of directory ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    finally:
        os.close(fd)  # closing drops the lock we may have taken


def _nobody_listens(sock_path: str) -> bool:
    """True when connecting to the Unix socket is refused: its owner is gone."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock_path)
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # too long, no permission...: not ours to judge
    finally:
        s.close()


def is_dead_worker_dir(path: str) -> bool:
    """Whether ``path`` is a worker directory of ours whose worker has died."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return False
    try:
        entries = set(os.listdir(path))
    except OSError:
        return False
    if entries != {SOCKET_NAME}:
        return False  # empty (being made right now) or holding files that are not a worker's
    return _lock_is_free(path) and _nobody_listens(os.path.join(path, SOCKET_NAME))


def remove_dead_worker_dirs(parents: Optional[list[str]] = None) -> list[str]:
    """Remove the private directories that workers which died left behind; returns them."""
    removed: list[str] = []
    for parent in parents if parents is not None else candidate_dirs():
        try:
            names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
        except OSError:
            continue
        for name in names:
            path = os.path.join(parent, name)
            if is_dead_worker_dir(path):
                shutil.rmtree(path, ignore_errors=True)
                if not os.path.exists(path):
                    removed.append(path)
    return removed


def say_tcp(endpoint: Endpoint) -> None:
    """Tell the user once that the worker listens on TCP, and why."""
    if endpoint.note:
        sys.stderr.write(
            f"fpdiff worker: {endpoint.note}; listening on loopback TCP {endpoint.address} "
            "(connections must present this worker's secret)\n"
        )
        sys.stderr.flush()

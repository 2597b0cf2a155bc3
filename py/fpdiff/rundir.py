"""The lock of a run directory: one training process per directory at a time.

The lock is an exclusive ``flock`` on ``<run>/.fpd-lock``, held by the worker for the life of a
training call. The kernel releases it when the holder dies, however it dies, so a stale lock never
needs cleaning by hand. The file also says who holds it (pids, since when), so a refused process
can name the holder; the file itself is never removed (removing a lock file races with its next
user), only its lock state matters.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

LOCK_NAME = ".fpd-lock"


@dataclass
class RunLock:
    """A held lock; :meth:`release` (or the holder's death) frees it."""

    directory: str
    fd: Optional[int]

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def _holder(fd: int) -> Optional[dict[str, Any]]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", errors="replace").strip()
        data = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def acquire(directory: str, owner: dict[str, Any]) -> tuple[Optional[RunLock], Optional[dict[str, Any]]]:
    """Try to lock ``directory`` (created if missing) without waiting.

    Returns ``(lock, None)`` on success, having written ``owner`` (plus this process's pid as
    ``worker``, the host and the time) into the lock file; ``(None, holder)`` when another process
    holds it, ``holder`` being what that process wrote (None if it has not written yet)."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None, holder
        raise
    info = {**owner, "worker": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return RunLock(directory, fd), None

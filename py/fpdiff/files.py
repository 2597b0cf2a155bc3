"""Atomic file writes: a crash or kill at any point leaves the previous file or the complete new one."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator


def fsync_dir(dirname: str) -> None:
    """Make a rename in ``dirname`` durable (best effort where the platform refuses)."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path`` to write; on success fsync it, rename it over
    ``path`` and fsync the directory; on any failure remove it and leave ``path`` untouched."""
    path = os.path.abspath(os.fspath(path))
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=d)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(d)

"""Where a checkpoint's bytes come from: the path a user gives, opened safely, its format sniffed.

A path may name a file or a work directory: ``<workdir>/checkpoints/checkpoint_<N>`` (flax files
have no extension, fpdiff's and Score SDE's end in ``.pth``) — the one with the largest N is taken.
Anything that is not a regular file (a FIFO, a socket, a device) is refused *before* it is read:
opening a FIFO for reading would wait forever for a writer. The format is recognised from the
first bytes, never from the name.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import stat
from typing import BinaryIO, List, Optional, Tuple

from .errors import NotACheckpointError

__all__ = ["resolve_path", "open_regular", "sniff", "sha256_file", "max_checkpoint_bytes"]

_SNAPSHOT = re.compile(r"^checkpoint_(\d+)(\.pth)?$")
#: a file larger than this is refused unread (FPD_MAX_CHECKPOINT_BYTES overrides; the largest
#: original checkpoint, deep NCSN++ with Adam state and EMA, is about 1.7 GB)
_DEFAULT_MAX_BYTES = 64 << 30


def max_checkpoint_bytes() -> int:
    raw = os.environ.get("FPD_MAX_CHECKPOINT_BYTES")
    return int(raw) if raw and raw.isdigit() else _DEFAULT_MAX_BYTES


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _snapshots(d: str) -> List[Tuple[int, str]]:
    try:
        names = os.listdir(d)
    except OSError:
        return []
    out = []
    for n in names:
        m = _SNAPSHOT.match(n)
        if m and os.path.isfile(os.path.join(d, n)):
            out.append((int(m.group(1)), os.path.join(d, n)))
    return sorted(out)


def resolve_path(path: str) -> str:
    """The checkpoint file ``path`` names: itself, or a work directory's newest snapshot.

    Raises ``FileNotFoundError`` for a missing path and ``NotACheckpointError`` for a directory
    without snapshots or anything that is not a regular file.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", path) from None
    if stat.S_ISDIR(st.st_mode):
        found = _snapshots(os.path.join(path, "checkpoints")) or _snapshots(path)
        if not found:
            raise NotACheckpointError(
                f"{path} is a directory, not a checkpoint file (and it holds no "
                "checkpoints/checkpoint_<N> to take)", path=path)
        return found[-1][1]
    if not stat.S_ISREG(st.st_mode):
        raise NotACheckpointError(f"{path} is {_kind(st.st_mode)}, not a checkpoint file; only "
                                  "regular files are read", path=path)
    return path


def open_regular(path: str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file, without ever blocking on a FIFO.

    ``O_NONBLOCK`` makes the open of a FIFO return at once; ``fstat`` on the open descriptor
    (not the name, which could be swapped in between) decides; then blocking mode is restored.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise NotACheckpointError(f"{path} is a directory, not a checkpoint file", path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotACheckpointError(f"{path} is {_kind(st.st_mode)}, not a checkpoint file; only "
                                      "regular files are read", path=path)
        limit = max_checkpoint_bytes()
        if st.st_size > limit:
            raise NotACheckpointError(
                f"{path} holds {st.st_size:,} bytes, more than any checkpoint fpdiff reads "
                f"({limit:,}; set FPD_MAX_CHECKPOINT_BYTES to raise the limit)", path=path)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sniff(head: bytes) -> Optional[str]:
    """'zip' | 'legacy' | 'safetensors' | 'flax' | None from a file's first 16 bytes.

    A legacy torch file starts with pickle's PROTO opcode 0x80 and a protocol number 2–5; a flax
    state is one msgpack map (0x81–0x8f, 0xde, 0xdf) whose first key is a string — the byte after
    a fixmap marker is then a str marker (0xa0–0xbf, 0xd9–0xdb), never 2–5.
    """
    if head[:2] == b"PK":
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and head[1] in (2, 3, 4, 5):
        return "legacy"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0:
        return "safetensors"
    if len(head) >= 2:
        first = head[0]
        key_at = 1 if 0x81 <= first <= 0x8F else 3 if first == 0xDE else 5 if first == 0xDF else None
        if key_at is not None and len(head) > key_at:
            k = head[key_at]
            if 0xA0 <= k <= 0xBF or k in (0xD9, 0xDA, 0xDB):
                return "flax"
    return None


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open_regular(path) as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()

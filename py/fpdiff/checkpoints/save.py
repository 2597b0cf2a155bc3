"""Write checkpoints in the PyTorch Score SDE format (and plain exports), atomically.

``torch.save({'optimizer': Adam.state_dict(), 'model': 'module.'-prefixed state dict, 'ema':
{'decay', 'num_updates', 'shadow_params'}, 'step': int})`` — what score_sde_pytorch's
``restore_checkpoint`` loads. A save goes to a temporary file beside the target, is fsynced and
renamed over it (``fpdiff.files.atomic_path``): a crash leaves the previous file or the new one.

A full disk is reported as such. torch's zip writer turns a failed ``write`` into "unexpected pos
…" (and, given a path, aborts the process from a destructor), so the bytes go through a writer
that records the first ``OSError`` and lets torch finish; the save then raises
:class:`NoSpaceError` naming the directory, and the previous file is untouched.
"""

from __future__ import annotations

import errno
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Optional

import numpy as np
import torch
import torch.nn as nn

from ..files import atomic_path
from .errors import CheckpointError, NoSpaceError
from .load import PREFIX, plain_numbers
from .match import unwrap
from .restore import trainable
from .source import sha256_file

__all__ = ["SavedCheckpoint", "checkpoint_state", "save_checkpoint", "snapshot_path",
           "meta_checkpoint_path", "save_run_checkpoint", "save_state_dict"]

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


@dataclass
class SavedCheckpoint:
    path: str
    step: Optional[int]
    sha256: str
    bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu(t: Any) -> Any:
    if torch.is_tensor(t):
        return t.detach().cpu()
    if isinstance(t, OrderedDict):
        return OrderedDict((k, _cpu(v)) for k, v in t.items())
    if isinstance(t, dict):
        return {k: _cpu(v) for k, v in t.items()}
    if isinstance(t, list):
        return [_cpu(v) for v in t]
    if isinstance(t, tuple):
        return tuple(_cpu(v) for v in t)
    return t


def checkpoint_state(model: nn.Module, optimizer: Any = None, ema: Any = None,
                     step: int = 0, *, ema_decay: float = 0.9999) -> dict:
    """The original's checkpoint dict: 'module.'-prefixed weights, EMA, Adam state, step.

    Without ``ema`` the shadows are the current weights (decay ``ema_decay``, 0 updates); without
    ``optimizer`` the state of a fresh Adam (Score SDE's settings) over ``model.parameters()`` —
    both what the original needs to resume from the file.
    """
    net = unwrap(model)
    sd = OrderedDict((PREFIX + k, v.detach().cpu()) for k, v in net.state_dict().items())
    if ema is None:
        ema_state = {"decay": float(ema_decay), "num_updates": 0,
                     "shadow_params": [p.detach().cpu().clone() for p in trainable(net)]}
    else:
        raw = ema.state_dict() if hasattr(ema, "state_dict") else dict(ema)
        ema_state = {"decay": plain_numbers(raw["decay"]), "num_updates": plain_numbers(raw["num_updates"]),
                     "shadow_params": [s.detach().cpu() for s in raw["shadow_params"]]}
    if optimizer is None:
        raw = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8,
                               weight_decay=0).state_dict()
    else:
        raw = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    opt_state = {"state": _cpu(raw["state"]),
                 "param_groups": [plain_numbers(dict(g)) for g in raw["param_groups"]]}
    return {"optimizer": opt_state, "model": sd, "ema": ema_state, "step": int(step)}


class _RecordingWriter:
    """A file object for torch.save that keeps the first write error instead of raising it
    into torch's C++ writer (which would misreport it, or abort)."""

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self._pos = 0
        self.error: Optional[OSError] = None

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if self.error is None:
            try:
                self._fh.write(data)
            except OSError as e:
                self.error = e
        self._pos += n
        return n

    def flush(self) -> None:
        if self.error is None:
            try:
                self._fh.flush()
            except OSError as e:
                self.error = e

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return False


def _no_space(path: str, err: OSError) -> NoSpaceError:
    d = os.path.dirname(path)
    kept = f"the previous {os.path.basename(path)} is untouched" if os.path.exists(path) else \
        "nothing was written"
    return NoSpaceError(f"no space left on {d}: cannot write {os.path.basename(path)} "
                        f"({os.strerror(err.errno)}); {kept}", path=path, directory=d)


def _write(path: str, write: Any) -> None:
    """``write(file object)`` into ``path`` atomically; a full disk becomes NoSpaceError."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                writer = _RecordingWriter(fh)
                write(writer)
                writer.flush()
                if writer.error is not None:
                    raise writer.error
    except OSError as e:
        if e.errno in _FULL:
            raise _no_space(path, e) from None
        raise CheckpointError(f"cannot write {path}: {e.strerror or e}", path=path) from None


def save_checkpoint(path: str, state: Mapping) -> SavedCheckpoint:
    """Write ``state`` (see ``checkpoint_state``) atomically: temp file, fsync, rename.

    A crash or kill at any point leaves either the previous file or the complete new one.
    """
    path = os.path.abspath(os.fspath(path))
    # through a file object: given a path, torch.save names the archive's root after the
    # (random) temporary file, and identical states would no longer give identical bytes
    _write(path, lambda fh: torch.save(dict(state), fh))
    digest, size = sha256_file(path), os.path.getsize(path)
    step = state.get("step")
    return SavedCheckpoint(path, int(step) if step is not None else None, digest, size)


def snapshot_path(workdir: str, k: int) -> str:
    """``<workdir>/checkpoints/checkpoint_<k>.pth`` (k = step // snapshot_freq in the original)."""
    return os.path.join(workdir, "checkpoints", f"checkpoint_{int(k)}.pth")


def meta_checkpoint_path(workdir: str) -> str:
    """``<workdir>/checkpoints-meta/checkpoint.pth``, the file the original resumes from."""
    return os.path.join(workdir, "checkpoints-meta", "checkpoint.pth")


def save_run_checkpoint(workdir: str, state: Mapping, *, k: Optional[int] = None,
                        meta: bool = False) -> SavedCheckpoint:
    """Save into a run directory with the original layout (snapshot ``k`` or the meta file)."""
    if meta == (k is not None):
        raise ValueError("give exactly one of k (snapshot index) or meta=True")
    return save_checkpoint(meta_checkpoint_path(workdir) if meta else snapshot_path(workdir, k), state)


def save_state_dict(path: str, sd: Mapping, *, fmt: str = "safetensors",
                    metadata: Optional[Mapping[str, str]] = None) -> SavedCheckpoint:
    """Write a plain state dict atomically as safetensors or a torch.save file."""
    if fmt not in ("safetensors", "state_dict"):
        raise ValueError("fmt must be 'safetensors' or 'state_dict'")
    path = os.path.abspath(os.fspath(path))
    tensors = OrderedDict((k, v.detach().cpu().contiguous().clone()) for k, v in sd.items())
    if fmt == "safetensors":
        from safetensors.torch import save as st_save
        meta = {"key_order": ",".join(tensors)}
        meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
        # one metadata entry: safetensors writes its metadata map in hash order, so several
        # entries would make the bytes (and sha256) of identical exports differ
        blob = st_save(tensors, metadata={"fpdiff": json.dumps(meta, sort_keys=True)})
        _write(path, lambda fh: fh.write(blob))
    else:
        _write(path, lambda fh: torch.save(tensors, fh))
    digest, size = sha256_file(path), os.path.getsize(path)
    step = (metadata or {}).get("step")
    return SavedCheckpoint(path, int(step) if str(step).isdigit() else None, digest, size)

"""Checkpoint errors, each with a stable ``code`` for the worker's typed error replies."""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["CheckpointError", "NotACheckpointError", "CorruptCheckpointError",
           "UnsafeCheckpointError", "ArchitectureMismatchError", "NoSpaceError"]


class CheckpointError(Exception):
    """Base class: ``path`` names the file, ``details`` travel with the error reply."""
    code = "checkpoint_error"

    def __init__(self, message: str, path: Optional[str] = None, **details: Any):
        super().__init__(message)
        self.path = path
        self.details = details

    def to_dict(self) -> dict:
        return {"code": self.code, "message": str(self), "path": self.path, **self.details}


class NotACheckpointError(CheckpointError):
    """Not a checkpoint at all (random bytes, TorchScript, a directory, a FIFO …)."""
    code = "not_a_checkpoint"


class CorruptCheckpointError(CheckpointError):
    """Looks like a checkpoint but is truncated, damaged or inconsistent (e.g. an odd ``step``)."""
    code = "corrupt_checkpoint"


class UnsafeCheckpointError(CheckpointError):
    """Asks for code or objects outside the allow-list; refused without running anything."""
    code = "unsafe_checkpoint"


class ArchitectureMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the network that was asked for."""
    code = "architecture_mismatch"


class NoSpaceError(CheckpointError):
    """A save ran out of disk space; the previous file at the path is untouched."""
    code = "no_space"

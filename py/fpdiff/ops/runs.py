"""Ops of run directories: the lock a training process holds on its directory (fpdiff.rundir)."""

from __future__ import annotations

import os

from .. import rundir
from .._generated import types as T
from . import OpContext, op

_KEY = "run_locks"


def _held(ctx: OpContext) -> dict[str, rundir.RunLock]:
    locks = ctx.state.get(_KEY)
    if locks is None:
        locks = {}
        ctx.state.put(_KEY, locks)
    return locks


@op("run.lock")
def run_lock(args: T.RunLockArgs, ctx: OpContext) -> T.RunLockResult:
    """Lock a run directory for this worker's life (or until run.unlock); never waits."""
    directory = os.path.abspath(args.dir)
    lock, holder = rundir.acquire(directory, dict(args.owner or {}))
    if lock is None:
        return T.RunLockResult(locked=False, dir=directory, holder=holder)
    _held(ctx)[directory] = lock
    return T.RunLockResult(locked=True, dir=directory, holder=None)


@op("run.unlock")
def run_unlock(args: T.RunUnlockArgs, ctx: OpContext) -> T.RunUnlockResult:
    """Release a lock taken by run.lock."""
    directory = os.path.abspath(args.dir)
    lock = _held(ctx).pop(directory, None)
    if lock is not None:
        lock.release()
    return T.RunUnlockResult(unlocked=lock is not None, dir=directory)

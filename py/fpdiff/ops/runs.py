"""Ops of run directories: the lock a training process holds on its directory (fpdiff.rundir)."""

from __future__ import annotations

import os
from typing import Any

from .. import rundir
from . import Args, OpContext, op

_KEY = "run_locks"


def _held(ctx: OpContext) -> dict[str, rundir.RunLock]:
    locks = ctx.state.get(_KEY)
    if locks is None:
        locks = {}
        ctx.state.put(_KEY, locks)
    return locks


@op("run.lock", control=True)
def run_lock(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Lock a run directory for this worker's life (or until run.unlock); never waits."""
    directory = os.path.abspath(args.str("dir"))
    owner = args.map("owner", {})
    args.done()
    lock, holder = rundir.acquire(directory, owner)
    if lock is None:
        return {"locked": False, "dir": directory, "holder": holder}
    _held(ctx)[directory] = lock
    return {"locked": True, "dir": directory, "holder": None}


@op("run.unlock", control=True)
def run_unlock(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Release a lock taken by run.lock."""
    directory = os.path.abspath(args.str("dir"))
    args.done()
    lock = _held(ctx).pop(directory, None)
    if lock is not None:
        lock.release()
    return {"unlocked": lock is not None, "dir": directory}

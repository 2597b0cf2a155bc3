"""Progress of a long numerics or toy op: throttled events, and a cancellation point at every call."""

from __future__ import annotations

import time
from typing import Any

from .._generated import types as T
from . import OpContext


class Progress:
    """``progress {done, total, nfe, elapsedSeconds}`` events at most every ``interval`` seconds.

    As a solver's ``callback(count, total)`` it reports ``nfe + count``: the function evaluations
    (ODE) or steps (PC) of the solve under way on top of ``nfe``, those of the finished batches the
    op adds up; :meth:`at` is the callback that counts finished items (the times of curves along t)
    instead. Every call is a point where the op stops when the client cancels it.
    """

    def __init__(self, ctx: OpContext, total: int, interval: float = 1.0):
        self.ctx, self.total, self.interval = ctx, total, interval
        self.done = 0
        self.nfe = 0
        self.t0 = time.perf_counter()
        self.last = self.t0

    def __call__(self, count: int, _total: Any = None) -> None:
        self.ctx.check_cancelled()
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.ctx.emit(T.Progress(done=self.done, total=self.total, nfe=self.nfe + int(count), elapsed_seconds=now - self.t0))

    def at(self, i: int, _total: Any = None) -> None:
        """A callback that counts finished items."""
        self.done = i
        self(0)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

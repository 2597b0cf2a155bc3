"""The worker as a distributed job: rank 0 serves the socket, the other ranks follow.

Under ``fpdiff.launch`` every rank runs ``python -m fpdiff.worker``. Rank 0 is the worker the
client talks to; ranks ≥ 1 never open a socket and never write to stdout. When rank 0 is about
to run a *collective* op — one every rank must run with the same arguments (training, loading a
model every rank will need, evaluation sharded over the data) — it broadcasts ``{op, args}``
(our msgpack codec, tensors included) on the control group; each follower runs the same handler
with a context whose events go nowhere and whose cancel flag stays clear (cancellation reaches the
ranks through the ops' own collectives: the training step's all-reduce, the evaluation rounds).
Other ops run on rank 0 alone.

Failure: a follower whose handler fails with anything but an :class:`~fpdiff.ops.OpError`
(which rank 0 raises alike, from the same arguments) prints the traceback and exits, and the
launcher stops the job; rank 0 does the same after replying, because a collective that failed on
one rank leaves the others waiting.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Optional

from . import protocol as P
from .distributed import Dist, PeerFailed

#: Ops every rank runs (see the module docstring). Everything else runs on rank 0 alone.
COLLECTIVE_OPS = frozenset({
    "train.run", "model.load",
    "eval.bpd_dataset", "eval.fid", "eval.fid_stats", "sample.shards",
})


def is_collective(op: str) -> bool:
    return op in COLLECTIVE_OPS


def announce(d: Dist, op: str, args: Any) -> None:
    """Rank 0: tell the followers to run ``op`` with ``args``."""
    d.broadcast_bytes(P.pack({"op": op, "args": args}))


def release(d: Dist) -> None:
    """Rank 0: tell the followers to exit (the worker is shutting down)."""
    d.broadcast_bytes(P.pack({"stop": True}))


def fail_fast(what: str, exc: BaseException) -> None:
    """A collective op failed unexpectedly on this rank: say why on stderr and leave, so the
    launcher stops the whole job instead of letting the other ranks wait for us."""
    sys.stderr.write(f"fpdiff worker rank {os.environ.get('RANK', '?')}: {what} failed; stopping the job\n")
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)


def follow(d: Dist, limits: Optional[P.Limits] = None) -> int:
    """Ranks ≥ 1: run the collective ops rank 0 announces, until it says stop."""
    from .ops import REGISTRY, OpContext, OpError, WorkerState

    state = WorkerState()
    limits = limits or P.Limits()
    while True:
        try:
            payload = d.broadcast_bytes()
        except RuntimeError as exc:  # rank 0 is gone (its connection closed)
            sys.stderr.write(f"fpdiff worker rank {d.rank}: lost rank 0 ({exc}); leaving\n")
            return 1
        msg = P.unpack(payload, limits)
        if msg.get("stop"):
            return 0
        op, args = msg["op"], msg.get("args") or {}
        ctx = OpContext(None, op, state, lambda _e: None)
        try:
            spec = REGISTRY[op]
            spec.run(spec.parse(args), ctx)
        except (OpError, PeerFailed):
            pass  # rank 0 raises the same error (or learns ours through all_or_none) and reports it
        except BaseException as exc:  # noqa: BLE001
            fail_fast(f"op {op}", exc)

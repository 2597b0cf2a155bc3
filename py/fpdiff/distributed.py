"""Several processes, one run: the pieces of PyTorch's own distributed engine fpdiff uses.

A worker started by ``torchrun`` (``python -m torch.distributed.run``) finds RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous in its environment. :func:`init_from_env` joins two process groups:

- the *compute* group (NCCL on CUDA machines, gloo otherwise) with a finite timeout
  (``FPD_DIST_TIMEOUT`` seconds, default 600): DistributedDataParallel's gradient all-reduce and the
  one small all-reduce per training step (loss, terms, a stop flag);
- the *control* group (gloo, effectively no timeout): rank 0 broadcasts the ops every rank runs,
  and evaluation over a data set gathers per-batch results on it — an adaptive ODE solve may take
  minutes longer on one rank than on another, which must not look like a hang.

A dead peer is found by the connection it leaves closed (gloo / NCCL error at once) or by
torchrun's agent, which polls its processes and stops the whole group when one fails; a rank
whose launcher dies gets SIGTERM from the kernel (:func:`die_with_parent`).

Randomness: data batches stay a function of (seed, k) for the *global* batch, and rank r takes
rows [r·B/W, (r+1)·B/W) of it; the loss draws (t, z, probes) and dropout of rank r come from
``(seed, k, stream, r)`` (:func:`rank_generator`). A one-process run keeps its old streams, so
runs and resumes of single-process training are unchanged.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

Tensor = torch.Tensor

__all__ = [
    "Dist", "env_world", "init_from_env", "current", "shard_bounds", "shard", "rank_seed", "rank_generator",
    "wrap_ddp", "broadcast_module_state", "broadcast_optimizer_state", "die_with_parent",
    "PeerFailed", "all_or_none",
]

DEFAULT_TIMEOUT_S = 600.0
CONTROL_TIMEOUT = datetime.timedelta(days=3650)


class PeerFailed(RuntimeError):
    """Another rank failed a step every rank had to pass (set-up of a collective op)."""


@dataclass
class Dist:
    """This process's place in the job and the groups it talks on."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    backend: str  # of the compute group
    control: Any = None  # gloo group with no practical timeout
    _cpu_group: Any = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """The device this rank computes on: the requested type, indexed by the local rank on CUDA."""
        if requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def group_for(self, device: torch.device) -> Any:
        """The compute group for tensors on ``device`` (gloo for CPU tensors on an NCCL job)."""
        if device.type == "cuda" or self.backend == "gloo":
            return None  # the default group
        if self._cpu_group is None:
            self._cpu_group = dist.new_group(backend="gloo", timeout=_timeout())
        return self._cpu_group

    # -- collectives ---------------------------------------------------------------------------

    def all_sum(self, t: Tensor) -> Tensor:
        """Sum of ``t`` over ranks (in place, returned), on the compute group of ``t``'s device."""
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group_for(t.device))
        return t

    def control_sum(self, values: Sequence[float]) -> list[float]:
        """Sum of a few float64 numbers over ranks on the control group (no timeout)."""
        t = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.control)
        return t.tolist()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (small, plain Python values) on every rank, in rank order."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def broadcast_object(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank (small, plain Python values of our own making)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def broadcast_bytes(self, payload: Optional[bytes] = None) -> bytes:
        """Rank 0's bytes on every rank (length first, then the bytes as a uint8 tensor)."""
        n = torch.tensor([len(payload) if payload is not None else 0], dtype=torch.int64)
        dist.broadcast(n, src=0, group=self.control)
        buf = (torch.frombuffer(bytearray(payload), dtype=torch.uint8) if self.is_main and n.item() > 0
               else torch.empty(int(n.item()), dtype=torch.uint8))
        if n.item() > 0:
            dist.broadcast(buf, src=0, group=self.control)
        return bytes(buf.numpy().tobytes())

    def barrier(self) -> None:
        dist.barrier(group=self.control)


_CURRENT: Optional[Dist] = None


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(os.environ.get("FPD_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))


def env_world() -> int:
    """WORLD_SIZE as torchrun set it (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def current() -> Optional[Dist]:
    """The job this process joined, or None (single process)."""
    return _CURRENT


def init_from_env(backend: Optional[str] = None) -> Optional[Dist]:
    """Join the job torchrun described in the environment; None when WORLD_SIZE ≤ 1.

    Backend: ``FPD_DIST_BACKEND``, else NCCL when CUDA is present, else gloo."""
    global _CURRENT
    if _CURRENT is not None:
        return _CURRENT
    world = env_world()
    if world <= 1:
        return None
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    backend = backend or os.environ.get("FPD_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        # a timed-out NCCL collective aborts the process instead of hanging (both spellings: 1.13 / 2.x)
        os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=_timeout())
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    _CURRENT = Dist(rank=rank, world=world, local_rank=local_rank, local_world=local_world, backend=backend,
                    control=control)
    return _CURRENT


def all_or_none(d: Optional[Dist], fn: Any) -> Any:
    """Run ``fn()`` on every rank and go on only if it succeeded everywhere.

    A set-up step of a collective op (reading the data, a checkpoint, an output directory) can
    fail on one rank alone; the others would then wait in the op's next collective for a peer that
    left. Here every rank reports success or its error on the control group; if any failed, this
    rank re-raises its own error or raises :class:`PeerFailed` naming the ranks that failed."""
    try:
        result, err = fn(), None
    except Exception as exc:  # noqa: BLE001 - reported to every rank, then re-raised
        result, err = None, exc
    if d is None:
        if err is not None:
            raise err
        return result
    reports = d.gather_objects(None if err is None else f"rank {d.rank}: {err}")
    bad = [r for r in reports if r]
    if bad:
        if err is not None:
            raise err
        raise PeerFailed("; ".join(bad))
    return result


# ---------------------------------------------------------------------------------------------
# Shards and seeds


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of rank ``rank`` when n rows are split as evenly as possible (first ranks
    take the extra rows)."""
    base, extra = divmod(int(n), int(world))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def shard(x: Tensor, rank: int, world: int) -> Tensor:
    lo, hi = shard_bounds(x.shape[0], rank, world)
    return x[lo:hi]


def rank_seed(seed: int, k: int, stream: int, rank: int) -> int:
    """A 63-bit seed of (seed, k, stream, rank) — rank r's own stream at step k."""
    a, b = np.random.SeedSequence([int(seed), int(k), int(stream), 1 + int(rank)]).generate_state(2, np.uint32)
    return ((int(a) << 32) | int(b)) & ((1 << 63) - 1)


def rank_generator(seed: int, k: int, stream: int, rank: int, device: Any = "cpu",
                   generator: Optional[torch.Generator] = None) -> torch.Generator:
    g = generator if generator is not None else torch.Generator(device=device)
    g.manual_seed(rank_seed(seed, k, stream, rank))
    return g


# ---------------------------------------------------------------------------------------------
# Models and optimiser state


def wrap_ddp(network: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``network``.

    Buffers are not re-broadcast at every forward (``broadcast_buffers=False``): the networks'
    only buffers are constants (NCSN++'s σ table, FIR kernels), and a loss that calls the network
    several times per step (finite-difference ∂t, the score-FPE points) would pay a broadcast
    each time. ``static_graph`` is not needed: the derivative terms differentiate in x with
    ``autograd.grad`` / forward mode, which never fires the parameters' gradient hooks, and the
    one ordinary backward fires each hook once (tested for every loss kind)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    kwargs: dict[str, Any] = {"broadcast_buffers": False, "process_group": d.group_for(device)}
    if device.type == "cuda":
        kwargs.update(device_ids=[device.index], output_device=device.index)
    return DDP(network, **kwargs)


@torch.no_grad()
def broadcast_module_state(tensors: Sequence[Tensor], d: Dist) -> None:
    """Rank 0's values of ``tensors`` (same shapes on every rank) copied into every rank's."""
    for t in tensors:
        group = d.group_for(t.device)
        buf = t if t.is_contiguous() else t.contiguous()
        dist.broadcast(buf, src=0, group=group)
        if buf is not t:
            t.copy_(buf)


def broadcast_optimizer_state(optimizer: torch.optim.Optimizer, d: Dist) -> None:
    """Make every rank's optimiser state rank 0's (Adam's moments and step counts, lr, betas...).

    Rank 0 sends the structure (tensor shapes and dtypes in place of tensors) over the control
    group, then each tensor on the compute group; the others rebuild and load it."""
    sd = optimizer.state_dict() if d.is_main else None
    layout = None
    if d.is_main:
        layout = {"param_groups": sd["param_groups"],
                  "state": {k: {n: (("tensor", tuple(v.shape), str(v.dtype).replace("torch.", "")) if torch.is_tensor(v) else ("value", v))
                                for n, v in s.items()} for k, s in sd["state"].items()}}
    layout = d.broadcast_object(layout)
    device = next((p.device for g in optimizer.param_groups for p in g["params"]), torch.device("cpu"))
    state: dict[Any, dict[str, Any]] = {}
    for k in sorted(layout["state"], key=lambda x: int(x)):
        entry = {}
        for n, (kind, *rest) in sorted(layout["state"][k].items()):
            if kind == "value":
                entry[n] = rest[0]
                continue
            shape, dtype = rest
            # Adam's scalar step lives on the CPU; the moments live with their parameter
            on = torch.device("cpu") if len(shape) == 0 else device
            t = sd["state"][k][n].to(on) if d.is_main else torch.empty(shape, dtype=getattr(torch, dtype), device=on)
            dist.broadcast(t, src=0, group=d.group_for(on))
            entry[n] = t
        state[k] = entry
    if not d.is_main:
        optimizer.load_state_dict({"state": state, "param_groups": layout["param_groups"]})


# ---------------------------------------------------------------------------------------------
# Process hygiene

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent (torchrun's agent) dies, so no
    rank outlives its launcher. Returns False where prctl is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
    return True

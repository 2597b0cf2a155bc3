"""Ops of the bridge itself: identity, liveness, echo, a cancellable sleep, cancel and shutdown."""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

from ..protocol import PROTOCOL_VERSION
from . import REGISTRY, Args, OpContext, op


def _versions() -> dict[str, Any]:
    import msgpack
    import numpy
    import zmq

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "numpy": numpy.__version__,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
    }
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    try:
        import torchdiffeq

        out["torchdiffeq"] = getattr(torchdiffeq, "__version__", "unknown")
    except ImportError:
        out["torchdiffeq"] = None
    return out


def _devices() -> list[dict[str, Any]]:
    import torch

    devices: list[dict[str, Any]] = [{"name": "cpu", "type": "cpu", "threads": torch.get_num_threads()}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append(
                {
                    "name": f"cuda:{i}",
                    "type": "cuda",
                    "model": p.name,
                    "memoryBytes": int(p.total_memory),
                    "capability": f"{p.major}.{p.minor}",
                }
            )
    return devices


@op("hello", control=True)
def hello(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Protocol version, library versions, devices and the list of ops."""
    args.done()
    return {
        "protocol": PROTOCOL_VERSION,
        "pid": __import__("os").getpid(),
        "versions": _versions(),
        "devices": _devices(),
        "ops": sorted(REGISTRY),
    }


@op("ping", control=True)
def ping(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Liveness check; answered by the I/O thread even while a compute op runs."""
    args.done()
    return {"pong": True, "time": time.time()}


@op("echo", control=True)
def echo(args: Args, ctx: OpContext) -> Any:
    """Return the args unchanged (tensors included)."""
    return args.raw


@op("sleep")
def sleep(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Sleep cooperatively, emitting a tick event every ``tick`` seconds; cancellable."""
    seconds = args.float("seconds", min=0)
    tick = args.float("tick", 0.05, min=0.001)
    args.done()
    start = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - start) < seconds:
        ctx.check_cancelled()
        time.sleep(min(tick, seconds - elapsed))
        n += 1
        ctx.emit({"tick": n, "elapsed": time.monotonic() - start})
    return {"slept": time.monotonic() - start, "ticks": n}


@op("cancel", control=True)
def cancel(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Cancel a queued or running request by id; the target then answers CANCELLED."""
    target = args.any("target")
    args.done()
    state = ctx.server.cancel(target)
    return {"target": target, "state": state}


@op("shutdown", control=True)
def shutdown(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Stop serving: cancel what runs, answer this request, then exit."""
    args.done()
    ctx.server.request_shutdown()
    return {"stopping": True}

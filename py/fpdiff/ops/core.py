"""Ops of the bridge itself: identity, liveness, echo, a cancellable sleep, cancel and shutdown."""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

from .._generated import types as T
from ..protocol import PROTOCOL_VERSION
from . import REGISTRY, OpContext, op


def _versions() -> T.HelloResultVersions:
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
    return T.HelloResultVersions(**out)


def _devices() -> list[T.HelloResultDevices]:
    import torch

    devices = [T.HelloResultDevices(name="cpu", type="cpu", threads=torch.get_num_threads())]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append(
                T.HelloResultDevices(
                    name=f"cuda:{i}",
                    type="cuda",
                    model=p.name,
                    memory_bytes=int(p.total_memory),
                    capability=f"{p.major}.{p.minor}",
                )
            )
    return devices


@op("hello")
def hello(args: T.HelloArgs, ctx: OpContext) -> T.HelloResult:
    """Protocol version, library versions, devices and the list of ops."""
    return T.HelloResult(
        protocol=PROTOCOL_VERSION,
        pid=__import__("os").getpid(),
        versions=_versions(),
        devices=_devices(),
        ops=sorted(REGISTRY),
    )


@op("ping")
def ping(args: T.PingArgs, ctx: OpContext) -> T.PingResult:
    """Liveness check; answered by the I/O thread even while a compute op runs."""
    return T.PingResult(pong=True, time=time.time())


@op("echo")
def echo(args: dict[str, Any], ctx: OpContext) -> dict[str, Any]:
    """Return the args unchanged (tensors included)."""
    return args


@op("sleep")
def sleep(args: T.SleepArgs, ctx: OpContext) -> T.SleepResult:
    """Sleep cooperatively, emitting a tick event every ``tick`` seconds; cancellable."""
    start = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - start) < args.seconds:
        ctx.check_cancelled()
        time.sleep(min(args.tick, args.seconds - elapsed))
        n += 1
        ctx.emit(T.SleepEvent(tick=n, elapsed=time.monotonic() - start))
    return T.SleepResult(slept=time.monotonic() - start, ticks=n)


@op("cancel")
def cancel(args: T.CancelArgs, ctx: OpContext) -> T.CancelResult:
    """Cancel a queued or running request by id; the target then answers CANCELLED."""
    return T.CancelResult(target=args.target, state=ctx.server.cancel(args.target))


@op("shutdown")
def shutdown(args: T.ShutdownArgs, ctx: OpContext) -> T.ShutdownResult:
    """Stop serving: cancel what runs, answer this request, then exit."""
    ctx.server.request_shutdown()
    return T.ShutdownResult(stopping=True)

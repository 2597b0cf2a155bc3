"""Worker operations: a registry of handlers and their execution context.

Each area of fpdiff registers its ops in its own module (``core``, ``config``, ``numerics``,
``models``, ``train``, ``toy``, ``data``, ``runs``) with :func:`op`. An op's contract is its zod schema
(``src/protocol/ops``); :meth:`OpSpec.parse` validates the incoming ``args`` against the JSON Schema
generated from it and hands the handler the generated dataclass (snake_case fields, zod defaults).
Handlers return a result dataclass (or a plain value), encoded back to camelCase once, here; they
raise :class:`OpError` for failures the caller can act on. Whether an op is a control op (answered
at once on the I/O thread) or a compute op (queued, one at a time) is the schema's ``compute``.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import schema
from ..protocol import BAD_REQUEST, CANCELLED, ProtocolError

Handler = Callable[[Any, "OpContext"], Any]


class OpError(ProtocolError):
    """An error with a wire code and, when it concerns an argument, the field path."""


class Cancelled(OpError):
    def __init__(self, message: str = "cancelled by the client"):
        super().__init__(CANCELLED, message)


def bad_request(path: str, message: str) -> OpError:
    """BAD_REQUEST naming ``path`` (``args.model``) in the message and the field."""
    return OpError(BAD_REQUEST, f"{path}: {message}", path)


@dataclass(frozen=True)
class OpSpec:
    name: str
    handler: Handler
    control: bool  # answered at once on the I/O thread; compute ops queue one at a time
    doc: str

    def parse(self, raw: Any) -> Any:
        """The request's args, validated against the op's schema and typed (BAD_REQUEST if not)."""
        try:
            return schema.parse(f"{self.name}.args", raw, "args")
        except schema.SchemaError as err:
            raise OpError(BAD_REQUEST, str(err), err.path) from None

    def run(self, args: Any, ctx: "OpContext") -> Any:
        """The handler's answer as a wire value."""
        return schema.to_wire(f"{self.name}.result", self.handler(args, ctx))


REGISTRY: dict[str, OpSpec] = {}

# Modules whose import registers ops.
AREAS = ("core", "config", "numerics", "models", "train", "toy", "data", "runs", "scale")


def op(name: str) -> Callable[[Handler], Handler]:
    """Registers ``fn`` as the handler of op ``name``, which must have a zod schema."""

    def register(fn: Handler) -> Handler:
        if name in REGISTRY:
            raise RuntimeError(f"op {name!r} registered twice")
        if name not in schema.OPS:
            raise RuntimeError(f"op {name!r} has no schema in src/protocol/ops (run `npm run gen` after adding one)")
        entry = schema.OPS[name]
        REGISTRY[name] = OpSpec(name, fn, not entry["compute"], entry["doc"])
        return fn

    return register


def load_all() -> dict[str, OpSpec]:
    for area in AREAS:
        importlib.import_module(f"{__name__}.{area}")
    return REGISTRY


class WorkerState:
    """What the worker keeps between requests: loaded models, open runs, anything an area needs.

    Areas store their objects under their own keys; the worker only owns the container.
    """

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        return self.items.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.items[key] = value


@dataclass
class OpContext:
    request_id: Any
    op: str
    state: WorkerState
    emit_fn: Callable[[Any], None]
    server: Any = None  # the serving loop, for the few control ops that steer it (cancel, shutdown)
    # made on first use: control ops (ping at every heartbeat) never need one
    _cancel_event: Optional[threading.Event] = field(default=None, repr=False)

    @property
    def cancel_event(self) -> threading.Event:
        if self._cancel_event is None:
            self._cancel_event = threading.Event()
        return self._cancel_event

    def emit(self, data: Any) -> None:
        """Stream an ``event`` reply to the caller (progress, metrics, checkpoints...)."""
        self.emit_fn(schema.to_wire(f"{self.op}.event", data))

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

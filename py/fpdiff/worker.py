"""The fpdiff worker: serves ops over a ZeroMQ ROUTER socket (``python -m fpdiff.worker``).

One I/O thread owns the socket: it decodes requests, answers control ops (hello, ping, echo,
cancel, shutdown) at once, and queues compute ops for a single compute thread, so one compute op
runs at a time while the worker stays responsive. Replies made on the compute thread travel
back through an inproc PUSH/PULL pair because ZeroMQ sockets must not be shared across threads.

On start the worker prints one JSON line on stdout (``{"ready": true, "endpoint", "pid",
"protocol", "auth"}``) and from then on sends anything printed to stdout to stderr. ``auth`` holds
the secret every connection must present (:mod:`fpdiff.auth`); where it listens is
:mod:`fpdiff.endpoint`'s choice. It exits when asked (``shutdown``, SIGTERM) or when its stdin
closes (the parent died).

Replies are never dropped: the ROUTER routes mandatorily with no send high-water mark, so a
reply waits until its peer reads it (the bridge bounds how many requests it has on the wire, so
that backlog is bounded too); a reply to a peer that has gone is discarded. Incoming messages
larger than the limit (plus a small margin) are cut off by ZeroMQ (``MAXMSGSIZE``) before they
are buffered.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from functools import partial
from typing import Any

import zmq

from . import distributed
from . import endpoint as E
from . import protocol as P
from . import worker_dist
from .auth import Authenticator
from .ops import REGISTRY, Cancelled, OpContext, OpError, WorkerState, load_all


ZERO_COPY_BYTES = 1 << 16
# Messages up to this much over the limit are read and answered TOO_LARGE (naming the request);
# anything larger is cut off by ZeroMQ before it is buffered.
OVERSIZE_MARGIN = 1 << 16
ENVELOPE_KEYS = frozenset({"v", "id", "op", "args"})


@dataclass
class Job:
    identity: bytes
    req_id: Any
    op: str
    args: Any
    ctx: OpContext
    raw: Any = None  # the args as they arrived (what rank 0 forwards to the other ranks of a job)


def _configure_torch(local_world: int = 1) -> None:
    """Threads: Debian's CPU torch starts with one intra-op thread; use the cores we were given
    (FPD_THREADS overrides). Precision: TF32 off unless FPD_TF32=1 — cuDNN enables it for
    convolutions by default, which moves NCSN++ outputs by ~4e-5 relative and likelihoods with
    them; speed is then a deliberate choice, not an accident of the GPU."""
    try:
        import torch
    except ImportError:
        return
    wanted = os.environ.get("FPD_THREADS")
    n = int(wanted) if wanted else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not wanted and local_world > 1:
        n = max(1, n // local_world)  # ranks on one machine share its cores
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    tf32 = os.environ.get("FPD_TF32") == "1"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


class Server:
    def __init__(self, limits: P.Limits, max_queue: int = 64, dist: Any = None):
        self.limits = limits
        self.dist = dist  # fpdiff.distributed.Dist when this is rank 0 of a job
        self.max_queue = max_queue
        self.ctx = zmq.Context.instance()
        self.state = WorkerState()
        self.queue: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition()
        self.running: Job | None = None
        self.stopping = False
        self.auth = Authenticator(self.ctx)  # bound before the ROUTER: no handshake goes unjudged
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 1000)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.SNDHWM, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes + OVERSIZE_MARGIN)
        self.auth.secure(self.router)
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.bind("inproc://replies")
        self._local = threading.local()
        E.remove_dead_worker_dirs()
        self.bound = E.bind(self._bind_router, forced=os.environ.get("FPD_ENDPOINT"), ipc=zmq.has("ipc"))
        self.endpoint = self.bound.address

    def _bind_router(self, address: str) -> str:
        self.router.bind(address)
        return self.router.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- replies -------------------------------------------------------------------------------

    def _push(self) -> zmq.Socket:
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect("inproc://replies")
            self._local.push = sock
        return sock

    def _encode(self, req_id: Any, kind: str, data: Any) -> bytes | memoryview:
        try:
            return P.pack_view(P.reply(req_id, kind, data))
        except Exception as exc:  # an op returned something the wire cannot carry
            return P.pack(P.reply(req_id, "error", P.error_data(P.WORKER_ERROR, f"reply could not be encoded: {exc}")))

    def send(self, identity: bytes, req_id: Any, kind: str, data: Any) -> None:
        """Send a reply from any thread."""
        payload = self._encode(req_id, kind, data)
        frames = [identity, payload]
        copy = len(payload) < ZERO_COPY_BYTES  # zero-copy costs more than a memcpy for small messages
        if threading.current_thread() is threading.main_thread():
            self._route(frames, copy)
        else:
            self._push().send_multipart(frames, copy=copy)

    def _route(self, frames: list, copy: bool) -> None:
        """Send on the ROUTER (I/O thread only); a reply to a peer that has gone is discarded."""
        try:
            self.router.send_multipart(frames, copy=copy)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise

    def send_error(self, identity: bytes, req_id: Any, exc: BaseException) -> None:
        if isinstance(exc, P.ProtocolError):
            details = dict(exc.details or {})
            if exc.code == P.WORKER_ERROR:
                details["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            data = P.error_data(exc.code, exc.message, field=exc.field, details=details or None)
        else:
            data = P.error_data(
                P.WORKER_ERROR,
                f"{type(exc).__name__}: {exc}",
                details={"traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))},
            )
        self.send(identity, req_id, "error", data)

    # -- scheduling ----------------------------------------------------------------------------

    def cancel(self, target: Any) -> str:
        with self.cond:
            if self.running is not None and self.running.req_id == target:
                self.running.ctx.cancel_event.set()
                return "running"
            for job in self.queue:
                if job.req_id == target:
                    self.queue.remove(job)
                    self.send(job.identity, job.req_id, "error", P.error_data(P.CANCELLED, "cancelled by the client before it started"))
                    return "queued"
        return "unknown"

    def request_shutdown(self) -> None:
        with self.cond:
            self.stopping = True
            if self.running is not None:
                self.running.ctx.cancel_event.set()
            while self.queue:
                job = self.queue.popleft()
                self.send(job.identity, job.req_id, "error", P.error_data(P.CANCELLED, "the worker is shutting down"))
            self.cond.notify_all()

    def compute_loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping and not self.queue:
                    if self.dist is not None:
                        worker_dist.release(self.dist)  # the followers leave with us
                    return
                job = self.queue.popleft()
                self.running = job
            collective = self.dist is not None and worker_dist.is_collective(job.op)
            try:
                if collective:
                    worker_dist.announce(self.dist, job.op, job.raw)
                result = REGISTRY[job.op].run(job.args, job.ctx)
                self.send(job.identity, job.req_id, "result", result)
            except BaseException as exc:  # noqa: BLE001 - every failure becomes an error reply
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    exc = Cancelled("interrupted")
                self.send_error(job.identity, job.req_id, exc)
                if collective and not isinstance(exc, OpError):
                    time.sleep(0.5)  # let the I/O thread deliver the reply before the job stops
                    worker_dist.fail_fast(f"op {job.op}", exc)
            finally:
                with self.cond:
                    self.running = None

    # -- requests ------------------------------------------------------------------------------

    def handle(self, identity: bytes, payload: bytes | memoryview) -> None:
        if len(payload) > self.limits.max_message_bytes:
            head = P.peek_header(payload)
            self.send(
                identity,
                head.get("id"),
                "error",
                P.error_data(P.TOO_LARGE, f"message of {len(payload)} bytes exceeds the worker's limit of {self.limits.max_message_bytes} bytes"),
            )
            return
        try:
            doc = P.unpack(payload, self.limits)
        except P.ProtocolError as exc:
            self.send_error(identity, P.peek_header(payload).get("id"), exc)
            return
        req_id = doc.get("id") if isinstance(doc, dict) else None
        try:
            op_name, args = self._check_envelope(doc)
        except P.ProtocolError as exc:
            self.send_error(identity, req_id if isinstance(req_id, (int, str)) else None, exc)
            return
        spec = REGISTRY[op_name]
        raw = args
        try:
            args = spec.parse(args)  # against the op's generated schema, before anything runs
        except BaseException as exc:  # noqa: BLE001 - a refusal, or a bug in decoding: an answer either way
            self.send_error(identity, req_id, exc)
            return
        ctx = OpContext(req_id, op_name, self.state, partial(self.send, identity, req_id, "event"), server=self)
        if spec.control:
            try:
                self.send(identity, req_id, "result", spec.run(args, ctx))
            except BaseException as exc:  # noqa: BLE001
                self.send_error(identity, req_id, exc)
            return
        with self.cond:
            if self.stopping:
                self.send(identity, req_id, "error", P.error_data(P.CANCELLED, "the worker is shutting down"))
                return
            if len(self.queue) >= self.max_queue:
                self.send(identity, req_id, "error", P.error_data(P.BUSY, f"{len(self.queue)} requests already wait; retry later"))
                return
            ctx.cancel_event  # created here, before another thread can race to make its own
            self.queue.append(Job(identity, req_id, op_name, args, ctx, raw))
            self.cond.notify()

    def _check_envelope(self, doc: Any) -> tuple[str, Any]:
        if not isinstance(doc, dict):
            raise P.ProtocolError(P.BAD_REQUEST, f"envelope: expected a map {{v, id, op, args}}, got {type(doc).__name__}", "envelope")
        extra = [] if ENVELOPE_KEYS.issuperset(doc) else sorted(set(map(str, doc)) - ENVELOPE_KEYS)
        if extra:
            raise P.ProtocolError(P.BAD_REQUEST, f"envelope.{extra[0]}: unknown field", f"envelope.{extra[0]}")
        if "v" not in doc:
            raise P.ProtocolError(P.BAD_REQUEST, "envelope.v: required (the protocol version)", "envelope.v")
        if doc["v"] != P.PROTOCOL_VERSION:
            raise P.ProtocolError(
                P.VERSION_MISMATCH,
                f"envelope.v: client speaks protocol {doc['v']!r}, this worker speaks {P.PROTOCOL_VERSION}; "
                "use the fpdiff Python package from the same checkout as the TypeScript side",
                "envelope.v",
            )
        if not isinstance(doc.get("id"), (int, str)) or isinstance(doc.get("id"), bool):
            raise P.ProtocolError(P.BAD_REQUEST, f"envelope.id: expected an integer or string, got {doc.get('id')!r}", "envelope.id")
        op_name = doc.get("op")
        if not isinstance(op_name, str):
            raise P.ProtocolError(P.BAD_REQUEST, f"envelope.op: expected a string, got {op_name!r}", "envelope.op")
        if op_name not in REGISTRY:
            raise P.ProtocolError(P.UNKNOWN_OP, f"envelope.op: unknown op {op_name!r}; known: {', '.join(sorted(REGISTRY))}", "envelope.op")
        args = doc.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise P.ProtocolError(P.BAD_REQUEST, f"envelope.args: expected a map, got {type(args).__name__}", "envelope.args")
        return op_name, args

    # -- main loop -----------------------------------------------------------------------------

    def serve(self, shutdown_grace: float = 30.0) -> None:
        compute = threading.Thread(target=self.compute_loop, name="fpd-compute", daemon=True)
        compute.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.auth.socket, zmq.POLLIN)
        deadline: float | None = None
        try:
            while True:
                for sock, _ in poller.poll(100):
                    if sock is self.router:
                        frames = self.router.recv_multipart(copy=False)
                        if len(frames) != 2:
                            self.refuse_frames(frames)
                            continue
                        # msgpack reads the frame's buffer in place: no copy of the message
                        self.handle_safely(frames[0].bytes, frames[1].buffer)
                    elif sock is self.pull:
                        frames = self.pull.recv_multipart(copy=False)
                        self._route(frames, len(frames[-1].buffer) < ZERO_COPY_BYTES)
                    else:
                        self.auth.handle()
                if self.stopping:
                    deadline = deadline or time.monotonic() + shutdown_grace
                    if not compute.is_alive() or time.monotonic() > deadline:
                        # forward the last replies of the compute thread before leaving
                        while self.pull.poll(50):
                            self._route(self.pull.recv_multipart(copy=False), False)
                        break
        finally:
            self.router.close(linger=500)
            self.pull.close(linger=0)
            self.auth.close()
            self.bound.close()

    def handle_safely(self, identity: bytes, payload: bytes | memoryview) -> None:
        """:meth:`handle`, but an unexpected failure is answered WORKER_ERROR: the I/O thread
        (and with it every other client's request) must outlive any one message."""
        try:
            self.handle(identity, payload)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            head = P.peek_header(payload)
            req_id = head.get("id") if isinstance(head.get("id"), (int, str)) and not isinstance(head.get("id"), bool) else None
            try:
                self.send_error(identity, req_id, exc)
            except Exception:  # noqa: BLE001 - nothing more can be said to this peer
                pass

    def refuse_frames(self, frames: list) -> None:
        """A request is one frame after the peer's identity; answer anything else BAD_REQUEST."""
        identity = frames[0].bytes
        head = P.peek_header(frames[1].buffer) if len(frames) > 1 else {}
        req_id = head.get("id") if isinstance(head.get("id"), (int, str)) and not isinstance(head.get("id"), bool) else None
        self.send(identity, req_id, "error", P.error_data(
            P.BAD_REQUEST, f"envelope: a request is one message frame, got {len(frames) - 1}", field="envelope"))


def _watch_stdin(server: Server) -> None:
    """The parent holds our stdin open; EOF means it is gone, so stop (and never linger)."""
    try:
        while os.read(0, 65536):  # raw fd: a buffered reader would block interpreter shutdown
            pass
    except OSError:
        pass
    server.request_shutdown()
    time.sleep(60.0)
    os._exit(3)


def _watch_stdin_follower() -> None:
    """A follower shares the launcher's stdin with rank 0: EOF means the client is gone. Rank 0
    then shuts down and releases us; leave by ourselves only if that never comes."""
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    time.sleep(60.0)
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpdiff.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--max-message-bytes", type=int, default=int(os.environ.get("FPD_MAX_MESSAGE_BYTES", 1 << 30)))
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--no-stdin-watch", action="store_true", help="keep running when stdin closes")
    parser.add_argument("--nproc", type=int, default=1, help="run as a job of this many processes on this machine")
    parser.add_argument("--nnodes", type=int, default=1, help="machines in the job")
    parser.add_argument("--node-rank", type=int, default=0, help="this machine's place in the job (0 serves)")
    parser.add_argument("--rdzv", default=None, help="HOST:PORT of node 0 (required with --nnodes > 1)")
    ns = parser.parse_args(argv)
    if (ns.nproc > 1 or ns.nnodes > 1) and distributed.env_world() <= 1:
        # become the launcher of the job (same pid, same pipes); every rank runs this module again
        rest = ["--max-message-bytes", str(ns.max_message_bytes), "--max-queue", str(ns.max_queue)]
        rest += ["--no-stdin-watch"] if ns.no_stdin_watch else []
        launch = ["--nproc", str(ns.nproc), "--nnodes", str(ns.nnodes), "--node-rank", str(ns.node_rank)]
        launch += ["--rdzv", ns.rdzv] if ns.rdzv else []
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "fpdiff.launch", *launch, "--", "-m", "fpdiff.worker", *rest])

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent, which cancels politely
    load_all()
    limits = P.Limits(max_message_bytes=ns.max_message_bytes, max_tensor_bytes=ns.max_message_bytes)
    dist = None
    if distributed.env_world() > 1:  # started by fpdiff.launch: one rank of a job
        distributed.die_with_parent()
        dist = distributed.init_from_env()
        _configure_torch(dist.local_world)
        if not dist.is_main:
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # only rank 0 speaks on stdout
            if not ns.no_stdin_watch:
                threading.Thread(target=_watch_stdin_follower, name="fpd-stdin", daemon=True).start()
            return worker_dist.follow(dist, limits)
    else:
        _configure_torch()
    server = Server(limits, max_queue=ns.max_queue, dist=dist)
    signal.signal(signal.SIGTERM, lambda *_: server.request_shutdown())

    ready = {"ready": True, "endpoint": server.endpoint, "pid": os.getpid(), "protocol": P.PROTOCOL_VERSION,
             "auth": server.auth.credentials(), "world": dist.world if dist is not None else 1}
    E.say_tcp(server.bound)
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must never reach the ready channel

    if not ns.no_stdin_watch:
        threading.Thread(target=_watch_stdin, args=(server,), name="fpd-stdin", daemon=True).start()
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A minimal Python client of the worker, for tests: spawns ``python -m fpdiff.worker`` and talks
to it over its real ZeroMQ socket with the real codec (the TypeScript bridge's protocol)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Optional

import zmq

from fpdiff import protocol as P

PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerError(Exception):
    def __init__(self, data: dict):
        super().__init__(f"{data.get('code')}: {data.get('message')}")
        self.code = data.get("code")
        self.message = data.get("message")
        self.data = data


class WorkerClient:
    def __init__(self, env: Optional[dict] = None, threads: int = 1, nproc: int = 1,
                 stderr: Any = None):
        """``nproc`` > 1: the worker runs as a job of that many ranks under ``fpdiff.launch``
        (its own session, so a test can stop the whole job by its process group)."""
        e = dict(os.environ)
        e["PYTHONPATH"] = PY_DIR + os.pathsep + e.get("PYTHONPATH", "")
        e["FPD_THREADS"] = str(threads)
        e.update(env or {})
        cmd = [sys.executable, "-m", "fpdiff.worker"]
        if nproc > 1:
            cmd = [sys.executable, "-m", "fpdiff.launch", "--nproc", str(nproc), "--", "-m", "fpdiff.worker"]
        self.proc = subprocess.Popen(cmd, cwd=PY_DIR, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr, start_new_session=nproc > 1)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        self.ready = json.loads(line)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # the worker accepts only connections that present its secret (fpdiff.auth)
        self.sock.setsockopt(zmq.PLAIN_USERNAME, self.ready["auth"]["username"].encode())
        self.sock.setsockopt(zmq.PLAIN_PASSWORD, self.ready["auth"]["password"].encode())
        self.sock.connect(self.ready["endpoint"])
        self.ids = itertools.count(1)

    def send(self, op: str, args: Any) -> int:
        rid = next(self.ids)
        self.sock.send(P.pack({"v": P.PROTOCOL_VERSION, "id": rid, "op": op, "args": args}))
        return rid

    def wait(self, rid: int, on_event: Optional[Callable[[dict], None]] = None, timeout: float = 300.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to request {rid} in {timeout} s")
            if not self.sock.poll(int(min(left, 1.0) * 1000)):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker died with {self.proc.returncode}")
                continue
            msg = P.unpack(self.sock.recv())
            if msg["id"] != rid:
                continue
            if msg["kind"] == "event":
                if on_event is not None:
                    on_event(msg["data"])
            elif msg["kind"] == "result":
                return msg["data"]
            else:
                raise WorkerError(msg["data"])

    def call(self, op: str, args: Any, on_event: Optional[Callable[[dict], None]] = None, timeout: float = 300.0) -> Any:
        return self.wait(self.send(op, args), on_event, timeout)

    def close(self) -> None:
        try:
            self.sock.send(P.pack({"v": P.PROTOCOL_VERSION, "id": 0, "op": "shutdown", "args": {}}))
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        finally:
            self.sock.close(0)
            self.ctx.term()

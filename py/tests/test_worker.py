"""The worker's socket (fpdiff.worker) with raw clients: no reply is dropped under load, messages of
several frames are answered, oversized ones are cut off before they are buffered, and a client that
does not present the worker's secret is refused."""

from __future__ import annotations

import os

import pytest
import zmq

from fpdiff import protocol as P

from _worker_client import WorkerClient


@pytest.fixture(scope="module")
def worker():
    w = WorkerClient(env={"FPD_MAX_MESSAGE_BYTES": str(1 << 20)})
    yield w
    w.close()


def _dealer(w: WorkerClient, password: str | None, timeout_ms: int = 5000) -> zmq.Socket:
    s = w.ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    if password is not None:
        s.setsockopt(zmq.PLAIN_USERNAME, w.ready["auth"]["username"].encode())
        s.setsockopt(zmq.PLAIN_PASSWORD, password.encode())
    s.connect(w.ready["endpoint"])
    return s


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def test_twenty_thousand_pings_sent_at_once_are_all_answered(worker):
    """A ROUTER drops replies silently at its high-water mark unless told otherwise (issue 11.4)."""
    s = _dealer(worker, worker.ready["auth"]["password"], timeout_ms=20_000)
    n = 20_000
    before = _peak_rss(worker.proc.pid)
    for i in range(n):  # nothing is read until everything is sent
        s.send(P.pack({"v": P.PROTOCOL_VERSION, "id": i, "op": "ping", "args": {}}))
    seen = set()
    while len(seen) < n:
        msg = P.unpack(s.recv())
        assert msg["kind"] == "result"
        seen.add(msg["id"])
    s.close()
    assert seen == set(range(n))
    assert _peak_rss(worker.proc.pid) - before < 64 << 20  # 20,000 small replies, not a leak


def test_a_message_of_two_frames_is_answered_bad_request(worker):
    s = _dealer(worker, worker.ready["auth"]["password"])
    s.send_multipart([P.pack({"v": P.PROTOCOL_VERSION, "id": 5, "op": "ping", "args": {}}), b"tail"])
    msg = P.unpack(s.recv())
    s.close()
    assert msg["id"] == 5 and msg["kind"] == "error"
    assert msg["data"]["code"] == P.BAD_REQUEST and msg["data"]["field"] == "envelope"
    assert "one message frame, got 2" in msg["data"]["message"]


def test_an_oversized_message_is_cut_off_before_it_is_buffered(worker):
    s = _dealer(worker, worker.ready["auth"]["password"], timeout_ms=1500)
    before = _peak_rss(worker.proc.pid)
    s.send(b"\x00" * (160 << 20))  # against a 1 MiB limit
    with pytest.raises(zmq.Again):
        s.recv()
    s.close()
    assert _peak_rss(worker.proc.pid) - before < 32 << 20
    assert worker.call("ping", {})["pong"] is True


@pytest.mark.parametrize("password", [None, "a-guess"], ids=["no credentials", "wrong secret"])
def test_a_client_without_the_secret_gets_no_answer(worker, password):
    s = _dealer(worker, password, timeout_ms=1500)
    s.send(P.pack({"v": P.PROTOCOL_VERSION, "id": 1, "op": "shutdown", "args": {}}))
    with pytest.raises(zmq.Again):
        s.recv()
    s.close()
    assert worker.call("ping", {})["pong"] is True  # the shutdown never arrived
    assert worker.proc.poll() is None


def test_the_ready_line_carries_the_secret_and_the_socket_is_private(worker):
    auth = worker.ready["auth"]
    assert auth["mechanism"] == "PLAIN" and len(auth["password"]) >= 32
    endpoint = worker.ready["endpoint"]
    assert endpoint.startswith("ipc://")
    d = os.path.dirname(endpoint[len("ipc://"):])
    assert os.stat(d).st_mode & 0o777 == 0o700

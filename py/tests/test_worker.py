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


def test_a_tuple_argument_is_decoded_and_the_worker_survives(worker, tmp_path):
    """plot.toy's xlim/ylim are zod tuples (JSON Schema prefixItems): decoding them once took the
    whole worker down, and `fpd toy` with it."""
    import torch

    out = worker.call("plot.toy", {"path": str(tmp_path / "s.png"), "panels": [
        {"kind": "samples", "x": torch.randn(50, 2), "xlim": [-3, 3], "ylim": [-3, 3]}]})
    assert out["bytes"] > 0 and (tmp_path / "s.png").read_bytes()[1:4] == b"PNG"
    assert worker.call("ping", {})["pong"] is True


def test_an_unexpected_failure_while_reading_a_request_is_answered_and_serving_goes_on(monkeypatch, tmp_path):
    """Whatever goes wrong with one message (here: a decoder bug), the I/O thread answers
    WORKER_ERROR to that request and lives on for every other one."""
    from fpdiff import worker as W
    from fpdiff.ops import REGISTRY, OpSpec, load_all

    load_all()
    monkeypatch.setenv("FPD_SOCKET_DIRS", str(tmp_path))

    class Broken(OpSpec):
        def parse(self, raw):
            raise TypeError("argument of type 'bool' is not iterable")

    real = REGISTRY["ping"]
    monkeypatch.setitem(REGISTRY, "ping", Broken(real.name, real.handler, real.control, real.doc))
    server = W.Server(P.Limits())
    sent = []
    monkeypatch.setattr(server, "send", lambda identity, req_id, kind, data: sent.append((req_id, kind, data)))
    try:
        server.handle_safely(b"peer", P.pack({"v": P.PROTOCOL_VERSION, "id": 9, "op": "ping", "args": {}}))
        monkeypatch.setitem(REGISTRY, "ping", real)
        server.handle_safely(b"peer", P.pack({"v": P.PROTOCOL_VERSION, "id": 10, "op": "ping", "args": {}}))
    finally:
        server.router.close(0)
        server.pull.close(0)
        server.auth.close()
        server.bound.close()
    assert sent[0][0] == 9 and sent[0][1] == "error" and sent[0][2]["code"] == P.WORKER_ERROR
    assert "not iterable" in sent[0][2]["message"] and "traceback" in sent[0][2]["details"]
    assert sent[1][0] == 10 and sent[1][1] == "result" and sent[1][2]["pong"] is True

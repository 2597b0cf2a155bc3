"""Who may talk to the worker: only the process that started it.

The worker draws a random secret at start and gives it to its parent in the ready line on its
stdout pipe (which no one else can read). Its ROUTER socket speaks ZeroMQ's PLAIN mechanism, and a
ZAP handler (RFC 27) in the worker accepts a connection only when it presents that secret; any
other peer — another user on loopback TCP, a client without the secret, a NULL or CURVE peer — is
refused during the handshake, before a single message of it is read. The check is per connection,
so it costs nothing per message (CURVE would encrypt every byte of every tensor).
"""

from __future__ import annotations

import hmac
import secrets
import sys
from dataclasses import dataclass, field

import zmq

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DOMAIN = "fpdiff"
USERNAME = "fpd"
_REPORTED_REFUSALS = 5


@dataclass
class Authenticator:
    """A ZAP handler bound in ``ctx``; the owner polls :attr:`socket` and calls :meth:`handle`."""

    ctx: zmq.Context
    password: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    refused: int = 0

    def __post_init__(self) -> None:
        self.socket = self.ctx.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)

    def credentials(self) -> dict[str, str]:
        """What the parent must present (sent once, in the ready line)."""
        return {"mechanism": "PLAIN", "username": USERNAME, "password": self.password}

    def secure(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before it binds) a PLAIN server whose peers this handler judges."""
        sock.setsockopt(zmq.PLAIN_SERVER, 1)
        sock.setsockopt(zmq.ZAP_DOMAIN, DOMAIN.encode())

    def accepts(self, mechanism: bytes, credentials: list[bytes]) -> bool:
        if mechanism != b"PLAIN" or len(credentials) != 2:
            return False
        user_ok = hmac.compare_digest(credentials[0], USERNAME.encode())
        return hmac.compare_digest(credentials[1], self.password.encode()) and user_ok

    def handle(self) -> None:
        """Answer one ZAP request: 200 for the parent's credentials, 400 for anything else."""
        frames = self.socket.recv_multipart()
        if len(frames) < 6 or frames[0] != b"1.0":
            # not a ZAP 1.0 request: answer so libzmq does not stall the handshake, and refuse
            self.socket.send_multipart([b"1.0", frames[1] if len(frames) > 1 else b"", b"400", b"malformed ZAP request", b"", b""])
            return
        request_id, address, mechanism, credentials = frames[1], frames[3], frames[5], frames[6:]
        if self.accepts(mechanism, credentials):
            self.socket.send_multipart([b"1.0", request_id, b"200", b"OK", USERNAME.encode(), b""])
            return
        self.refused += 1
        if self.refused <= _REPORTED_REFUSALS:
            who = address.decode(errors="replace") or "a local peer"
            sys.stderr.write(f"fpdiff worker: refused a connection from {who} ({mechanism.decode(errors='replace')}: not this worker's secret)\n")
        self.socket.send_multipart([b"1.0", request_id, b"400", b"not this worker's secret", b"", b""])

    def close(self) -> None:
        self.socket.close(linger=0)

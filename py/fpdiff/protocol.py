"""The wire between the TypeScript bridge and the worker: envelope, codec and error codes.

Requests are ``{v, id, op, args}``; replies are ``{v, id, kind, data}`` with kind one of
``event`` | ``result`` | ``error``. Both are single msgpack documents. Tensors travel as one
msgpack extension (type ``TENSOR_EXT``) whose payload is::

    u8 layout version (1) | u8 dtype code | u8 ndim | 5 zero bytes | ndim x u64 LE shape | raw LE data

The header is a multiple of 8 bytes, so the data of a payload that starts aligned is aligned for
every dtype; decoding views the payload with ``numpy.frombuffer`` and ``torch.from_numpy``
without copying it.
"""

from __future__ import annotations

import struct
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

try:  # the codec is usable without torch (numpy arrays), the worker always has it
    import torch
except ImportError:  # pragma: no cover - exercised only on broken installs
    torch = None  # type: ignore[assignment]

PROTOCOL_VERSION = 1
TENSOR_EXT = 0x10
_LAYOUT = 1

# Codes shared with src/protocol/errors.ts.
BAD_REQUEST = "BAD_REQUEST"
UNKNOWN_OP = "UNKNOWN_OP"
CANCELLED = "CANCELLED"
BUSY = "BUSY"
WORKER_ERROR = "WORKER_ERROR"
VERSION_MISMATCH = "VERSION_MISMATCH"
TOO_LARGE = "TOO_LARGE"
DIVERGED = "DIVERGED"  # training stopped on a NaN/Inf loss; the last good checkpoint is kept
ERROR_CODES = (BAD_REQUEST, UNKNOWN_OP, CANCELLED, BUSY, WORKER_ERROR, VERSION_MISMATCH, TOO_LARGE, DIVERGED)

# dtype code -> (name, numpy dtype used to view the bytes, itemsize)
_DTYPES: list[tuple[str, str]] = [
    ("float16", "<f2"),
    ("bfloat16", "<i2"),  # numpy has no bfloat16: carried as raw 16-bit words
    ("float32", "<f4"),
    ("float64", "<f8"),
    ("int64", "<i8"),
    ("int32", "<i4"),
    ("uint8", "u1"),
    ("bool", "?"),
]
DTYPE_NAMES = [name for name, _ in _DTYPES]
_CODE_BY_NAME = {name: code for code, (name, _) in enumerate(_DTYPES)}

if sys.byteorder != "little":  # pragma: no cover
    raise RuntimeError("fpdiff's wire format assumes a little-endian host")


class ProtocolError(Exception):
    """A message that cannot be accepted; ``code`` is one of ERROR_CODES, ``field`` the path,
    ``details`` a JSON-able map the client receives as the error's ``details``."""

    def __init__(self, code: str, message: str, field: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.details = details


@dataclass(frozen=True)
class Limits:
    """Size limits applied to every incoming message and tensor."""

    max_message_bytes: int = 1 << 30
    max_tensor_bytes: int = 1 << 30


# ---------------------------------------------------------------------------------------------
# Tensor extension


def _torch_dtype(name: str):
    return getattr(torch, name)


def encode_tensor(value: Any) -> msgpack.ExtType:
    """Serialise a torch tensor or numpy array (any strides, any device) as the tensor extension."""
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        name = str(t.dtype).removeprefix("torch.")
        if name not in _CODE_BY_NAME:
            raise ProtocolError(WORKER_ERROR, f"tensor dtype {t.dtype} cannot be sent over the wire")
        t = t.contiguous()
        if name == "bfloat16":
            t = t.view(torch.int16)
        arr = t.numpy()
        shape = tuple(value.shape)
    else:
        arr = np.asarray(value)
        name = arr.dtype.name
        if name not in _CODE_BY_NAME:
            raise ProtocolError(WORKER_ERROR, f"array dtype {arr.dtype} cannot be sent over the wire")
        shape = arr.shape
    code = _CODE_BY_NAME[name]
    header = struct.pack(f"<BBB5x{len(shape)}Q", _LAYOUT, code, len(shape), *shape)
    arr = np.ascontiguousarray(arr)
    # join() copies the data exactly once into the payload (header + bytes would copy twice).
    return msgpack.ExtType(TENSOR_EXT, b"".join((header, memoryview(arr.reshape(-1).view(np.uint8)))))


def decode_tensor(payload: bytes, limits: Limits = Limits()):
    """Inverse of :func:`encode_tensor`; returns a torch tensor viewing ``payload`` (no copy)."""
    if len(payload) < 8:
        raise ProtocolError(BAD_REQUEST, "tensor payload shorter than its 8-byte header")
    layout, code, ndim = payload[0], payload[1], payload[2]
    if layout != _LAYOUT:
        raise ProtocolError(BAD_REQUEST, f"tensor payload layout {layout} is not supported (expected {_LAYOUT})")
    if code >= len(_DTYPES):
        raise ProtocolError(BAD_REQUEST, f"tensor dtype code {code} is unknown")
    head = 8 + 8 * ndim
    if len(payload) < head:
        raise ProtocolError(BAD_REQUEST, f"tensor payload too short for its {ndim}-d shape")
    shape = struct.unpack_from(f"<{ndim}Q", payload, 8)
    name, np_dtype = _DTYPES[code]
    itemsize = np.dtype(np_dtype).itemsize
    numel = 1
    for n in shape:
        numel *= n
    nbytes = numel * itemsize
    if nbytes > limits.max_tensor_bytes:
        raise ProtocolError(TOO_LARGE, f"tensor of shape {list(shape)} ({nbytes} bytes) exceeds the limit of {limits.max_tensor_bytes} bytes")
    if len(payload) - head != nbytes:
        raise ProtocolError(
            BAD_REQUEST,
            f"tensor of dtype {name} and shape {list(shape)} needs {nbytes} data bytes but carries {len(payload) - head}",
        )
    arr = np.frombuffer(payload, dtype=np_dtype, count=numel, offset=head).reshape(shape)
    if torch is None:
        return arr
    with warnings.catch_warnings():
        # The array views the immutable message; handlers treat incoming tensors as read-only.
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(arr)
    if name == "bfloat16":
        t = t.view(torch.int16).view(torch.bfloat16) if numel else torch.empty(shape, dtype=torch.bfloat16)
    return t


# ---------------------------------------------------------------------------------------------
# Documents


def _default(obj: Any):
    if torch is not None and isinstance(obj, torch.Tensor):
        return encode_tensor(obj)
    if isinstance(obj, np.ndarray):
        return encode_tensor(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot send a value of type {type(obj).__name__} over the wire")


def pack(doc: Any) -> bytes:
    return msgpack.packb(doc, default=_default, use_bin_type=True)


def pack_view(doc: Any) -> memoryview:
    """Like :func:`pack`, as a view of the packer's own buffer: one copy of a large message fewer.

    The view keeps its packer alive, so it may be handed to ZeroMQ without copying."""
    packer = msgpack.Packer(default=_default, use_bin_type=True, autoreset=False)
    packer.pack(doc)
    return packer.getbuffer()


def unpack(buf: bytes, limits: Limits = Limits()) -> Any:
    def ext_hook(code: int, data: bytes):
        if code == TENSOR_EXT:
            return decode_tensor(data, limits)
        raise ProtocolError(BAD_REQUEST, f"unknown msgpack extension type {code}")

    try:
        return msgpack.unpackb(buf, ext_hook=ext_hook, raw=False, strict_map_key=False)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(BAD_REQUEST, f"message is not valid msgpack ({type(exc).__name__}: {str(exc) or 'no detail'})") from None


def peek_header(buf: bytes) -> dict[str, Any]:
    """Read ``v``, ``id`` and ``op`` from the start of an envelope without decoding its args.

    Used to answer an oversized or undecodable message to the right request id.
    """
    up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(buf), 1))
    up.feed(buf[:4096])
    found: dict[str, Any] = {}
    try:
        for _ in range(up.read_map_header()):
            key = up.unpack()
            if key in ("v", "id", "op") :
                found[key] = up.unpack()
            else:
                break  # args (or anything large) comes last; stop before reading it
    except Exception:
        pass
    return found


def reply(req_id: Any, kind: str, data: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": req_id, "kind": kind, "data": data}


def error_data(code: str, message: str, *, field: str | None = None, details: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        out["field"] = field
    if details:
        out["details"] = details
    return out

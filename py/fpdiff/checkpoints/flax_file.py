"""Reading the flax checkpoints of score_flow, score_sde (JAX) and mle_score_ode — no JAX, no flax
(docs/maths.md §10.1).

``flax.training.checkpoints.save_checkpoint`` writes ``flax.serialization.to_bytes(state)``: one
msgpack map of the training ``State`` (``step``, ``optimizer`` = {``target``: the weights,
``state``: {``step``, ``param_states``: {leaf: {``grad_ema``, ``grad_sq_ema``}}}}, ``lr``,
``model_state``, ``ema_rate``, ``params_ema``, ``rng``). Every array is a msgpack extension of
code 1 (code 3: a NumPy scalar) whose payload is itself msgpack ``[shape, dtype name, C-order
bytes]``; an array over 1 GiB is split into ``{"__msgpack_chunked_array__": true, "shape",
"chunks"}``. Module names inside a params tree are in plain string order (``…_10`` before
``…_2``); nothing here depends on that order.

The file carries no code, and it is read as data only: the ``msgpack`` package with limits on
every length and on nesting, a dtype allow-list, every array's byte count checked against its
shape, map keys that are plain strings. Nothing is allocated that the file does not hold.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

import msgpack
import numpy as np
import torch

from .errors import CorruptCheckpointError, NotACheckpointError
from .validate import check_fraction, check_positive_float, check_step

__all__ = ["FlaxState", "read_flax", "parse_flax_state", "STATE_FIELDS", "DTYPES"]

#: the fields of score_flow's / score_sde's ``State``, in their order
STATE_FIELDS = ("step", "optimizer", "lr", "model_state", "ema_rate", "params_ema", "rng")
#: dtype names a flax array may have, and how each is read (little-endian)
DTYPES: Dict[str, Tuple[str, torch.dtype]] = {  # name -> (NumPy code in the file, torch dtype loaded)
    "float16": ("<f2", torch.float16), "float32": ("<f4", torch.float32),
    "float64": ("<f8", torch.float64), "bfloat16": ("<u2", torch.bfloat16),
    "int8": ("i1", torch.int8), "int16": ("<i2", torch.int16), "int32": ("<i4", torch.int32),
    "int64": ("<i8", torch.int64), "uint8": ("u1", torch.uint8), "uint16": ("<u2", torch.int32),
    "uint32": ("<u4", torch.int64), "uint64": ("<u8", torch.int64), "bool": ("?", torch.bool),
}
_EXT_ARRAY, _EXT_COMPLEX, _EXT_SCALAR = 1, 2, 3
_CHUNKED = "__msgpack_chunked_array__"
_MAX_NDIM = 16
_MAX_DEPTH = 64
_MAX_KEY = 1 << 10
_MAX_MAP = 1 << 16
_READ = 1 << 22
#: msgpack's own limit for one object; flax chunks arrays below it
_MAX_EXT = (1 << 31) - 1


class _FlaxArray:
    """A decoded array as a torch tensor that owns its data (the payload is freed at once), and
    the dtype name the file gave it."""
    __slots__ = ("tensor", "dtype_name")

    def __init__(self, tensor: torch.Tensor, dtype_name: str):
        self.tensor = tensor
        self.dtype_name = dtype_name

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def ndim(self) -> int:
        return self.tensor.dim()


def _to_tensor(view: np.ndarray, dname: str) -> torch.Tensor:
    """An owning torch copy of a little-endian NumPy view (uint16/32/64 widened to a signed type)."""
    if dname == "bfloat16":
        return torch.from_numpy(view.view(np.int16).copy()).view(torch.bfloat16)
    if dname == "uint64":
        if view.size and int(view.max()) >= 1 << 63:
            raise ValueError("a uint64 value beyond int64")
        return torch.from_numpy(view.astype(np.int64))
    if dname in ("uint16", "uint32"):
        return torch.from_numpy(view.astype(np.int32 if dname == "uint16" else np.int64))
    return torch.from_numpy(view.astype(view.dtype.newbyteorder("="), copy=True))


def _bad(where: str, what: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"{where}: {what}", path=where.split(":", 1)[0])


def _decode_array(payload: bytes, where: str) -> _FlaxArray:
    """``[shape, dtype name, raw bytes]`` → an array viewing the payload (no copy)."""
    u = msgpack.Unpacker(raw=True, max_buffer_size=max(len(payload), 1), max_array_len=_MAX_NDIM,
                         max_map_len=0, strict_map_key=True)
    u.feed(payload)
    try:
        head = u.read_array_header()
        if head != 3:
            raise ValueError(f"an array record has {head} fields, not [shape, dtype, bytes]")
        shape = u.unpack()
        name = u.unpack()
        pos = u.tell()
    except (ValueError, msgpack.OutOfData, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as e:
        raise _bad(where, f"malformed array record ({e})") from None
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or \
            not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(where, f"array shape {shape!r} is not a list of at most {_MAX_NDIM} "
                          "non-negative ints")
    if not isinstance(name, bytes) or name.decode("ascii", "replace") not in DTYPES:
        raise _bad(where, f"array dtype {name!r} is not one of {', '.join(DTYPES)}")
    dname = name.decode("ascii")
    np_code, tdt = DTYPES[dname]
    marker = payload[pos] if pos < len(payload) else None
    if marker == 0xC4 or (marker is not None and 0xA0 <= marker <= 0xBF):
        n, start = (payload[pos + 1], pos + 2) if marker == 0xC4 else (marker & 0x1F, pos + 1)
    elif marker in (0xC5, 0xDA):
        n, start = int.from_bytes(payload[pos + 1:pos + 3], "big"), pos + 3
    elif marker in (0xC6, 0xDB):
        n, start = int.from_bytes(payload[pos + 1:pos + 5], "big"), pos + 5
    elif marker == 0xD9:
        n, start = payload[pos + 1], pos + 2
    else:
        raise _bad(where, "array data is not a byte string")
    itemsize = np.dtype(np_code).itemsize
    numel = 1
    for d in shape:
        numel *= d
    if start + n != len(payload):
        raise _bad(where, f"array record is {len(payload)} bytes, its fields end at {start + n}")
    if n != numel * itemsize:
        raise _bad(where, f"array of shape {shape} {dname} needs {numel * itemsize} bytes, the file "
                          f"holds {n}")
    view = np.frombuffer(payload, dtype=np_code, count=numel, offset=start).reshape(shape)
    try:
        return _FlaxArray(_to_tensor(view, dname), dname)
    except ValueError as e:
        raise _bad(where, str(e)) from None


def _ext_hook(where: str):
    def hook(code: int, data: bytes) -> Any:
        if code == _EXT_ARRAY:
            return _decode_array(data, where)
        if code == _EXT_SCALAR:
            a = _decode_array(data, where)
            if a.ndim:
                raise _bad(where, "a NumPy scalar record holds an array")
            return a
        raise _bad(where, f"unsupported msgpack extension type {code} (flax arrays are type 1, "
                          "scalars type 3)")
    return hook


def read_flax(fh: BinaryIO, path: str, size: int) -> Dict[str, Any]:
    """The msgpack map of a flax checkpoint, arrays decoded, chunked arrays joined."""
    u = msgpack.Unpacker(
        fh, read_size=min(_READ, max(size, 1)), raw=False, strict_map_key=True,
        ext_hook=_ext_hook(path), max_buffer_size=min(max(size, 1), _MAX_EXT + _READ),
        max_str_len=_MAX_KEY, max_bin_len=0, max_array_len=_MAX_MAP, max_map_len=_MAX_MAP,
        max_ext_len=_MAX_EXT)
    try:
        top = u.unpack()
    except CorruptCheckpointError:
        raise
    except msgpack.OutOfData:
        raise CorruptCheckpointError(f"{path} is truncated: its msgpack state ends early",
                                     path=path) from None
    except (ValueError, msgpack.FormatError, msgpack.StackError, msgpack.BufferFull,
            UnicodeDecodeError, TypeError) as e:
        raise CorruptCheckpointError(f"{path} is not a readable flax checkpoint: "
                                     f"{type(e).__name__}: {e}", path=path) from None
    if u.tell() != size:
        raise CorruptCheckpointError(f"{path} is corrupt: {size - u.tell()} bytes follow the state",
                                     path=path)
    if not isinstance(top, dict):
        raise NotACheckpointError(f"{path} is msgpack but not a flax training state (a "
                                  f"{type(top).__name__}, not a map)", path=path)
    return _join_chunks(top, path, "", 0)


def _join_chunks(node: Any, path: str, where: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _bad(path, f"nested deeper than {_MAX_DEPTH} levels at {where or '/'}")
    if not isinstance(node, dict):
        return node
    if _CHUNKED in node:
        return _unchunk(node, path, where)
    out = {}
    for k, v in node.items():
        if not isinstance(k, str) or not k or "/" in k:
            raise _bad(path, f"key {k!r} under {where or '/'} is not a plain name")
        out[k] = _join_chunks(v, path, f"{where}/{k}", depth + 1)
    return out


def _indexed(d: Any, what: str, path: str, where: str) -> List[Any]:
    if not isinstance(d, dict) or sorted(d, key=lambda k: (len(k), k)) != [str(i) for i in range(len(d))]:
        raise _bad(path, f"chunked array at {where}: its {what} is not a map 0..n-1")
    return [d[str(i)] for i in range(len(d))]


def _unchunk(node: Dict[str, Any], path: str, where: str) -> _FlaxArray:
    if set(node) != {_CHUNKED, "shape", "chunks"} or node[_CHUNKED] is not True:
        raise _bad(path, f"chunked array at {where} has fields {sorted(node)}")
    shape = _indexed(node["shape"], "shape", path, where)
    chunks = _indexed(node["chunks"], "chunks", path, where)
    if len(shape) > _MAX_NDIM or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(path, f"chunked array at {where}: shape {shape!r}")
    if not chunks or not all(isinstance(c, _FlaxArray) and c.ndim == 1 for c in chunks):
        raise _bad(path, f"chunked array at {where}: its chunks are not 1-D arrays")
    names = {c.dtype_name for c in chunks}
    if len(names) != 1:
        raise _bad(path, f"chunked array at {where}: chunks of different dtypes {sorted(names)}")
    numel = 1
    for d in shape:
        numel *= d
    held = sum(c.tensor.numel() for c in chunks)
    if held != numel:
        raise _bad(path, f"chunked array at {where}: chunks hold {held} elements, the shape {shape} "
                         f"needs {numel}")
    return _FlaxArray(torch.cat([c.tensor for c in chunks]).reshape(shape), chunks[0].dtype_name)


# ----------------------------------------------------------------------------------------------
# the training State

@dataclass
class FlaxState:
    """A score_flow / score_sde ``State`` as flat ``{"Module_k/Sub_j/leaf": tensor}`` trees."""
    step: int
    params: "OrderedDict[str, torch.Tensor]"           # optimizer.target
    params_ema: "OrderedDict[str, torch.Tensor]"
    grad_ema: "OrderedDict[str, torch.Tensor]"
    grad_sq_ema: "OrderedDict[str, torch.Tensor]"
    adam_step: int
    lr: float
    ema_rate: float
    dtypes: Dict[str, str]                             # path -> flax dtype name (params)


def _flatten(tree: Any, path: str, where: str) -> "OrderedDict[str, _FlaxArray]":
    out: "OrderedDict[str, _FlaxArray]" = OrderedDict()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, _FlaxArray):
            out[prefix] = node
            return
        if not isinstance(node, dict):
            raise _bad(path, f"{where}/{prefix}: a {type(node).__name__} where a parameter tree "
                             "holds arrays and maps")
        if not node and prefix:
            raise _bad(path, f"{where}/{prefix}: an empty module")
        for k in node:
            walk(node[k], f"{prefix}/{k}" if prefix else k)

    walk(tree, "")
    return out


def _scalar(node: Any, name: str, path: str) -> _FlaxArray:
    if not isinstance(node, _FlaxArray) or node.ndim != 0:
        raise CorruptCheckpointError(f"{path}: field {name!r} must be a 0-d array, got "
                                     f"{_describe(node)}", path=path, field=name)
    return node


def _describe(node: Any) -> str:
    if isinstance(node, _FlaxArray):
        return f"an array of shape {list(node.shape)} {node.dtype_name}"
    if isinstance(node, dict):
        return f"a map with keys {sorted(node)[:5]}"
    return f"a {type(node).__name__}"


def _decimal(value: float, node: _FlaxArray) -> float:
    if node.dtype_name == "float32":
        return float(str(np.float32(value)))
    return value


def parse_flax_state(top: Dict[str, Any], path: str) -> FlaxState:
    """Check the State's fields and structure; the trees come out flat, as torch tensors."""
    if "ema_train_bpd" in top or "ema_eval_bpd" in top:
        raise NotACheckpointError(f"{path} is score_flow's Flow++ dequantizer state (DeqState), not "
                                  "a score model's", path=path)
    missing = [f for f in STATE_FIELDS if f not in top]
    extra = sorted(set(top) - set(STATE_FIELDS))
    if missing or extra:
        raise NotACheckpointError(
            f"{path} is msgpack but not a score_flow / score_sde training state: "
            + "; ".join(([f"missing field(s) {', '.join(missing)}"] if missing else []) +
                        ([f"unexpected field(s) {', '.join(extra)}"] if extra else []))
            + f" (expected {', '.join(STATE_FIELDS)})", path=path, missing=missing, unexpected=extra)
    opt = top["optimizer"]
    if not (isinstance(opt, dict) and set(opt) == {"target", "state"} and isinstance(opt["state"], dict)
            and set(opt["state"]) == {"step", "param_states"}):
        raise NotACheckpointError(f"{path}: field 'optimizer' is not flax.optim's "
                                  "{target, state: {step, param_states}}", path=path)
    if top["model_state"] != {}:
        keys = sorted(top["model_state"]) if isinstance(top["model_state"], dict) else []
        raise CorruptCheckpointError(
            f"{path}: field 'model_state' holds {keys or _describe(top['model_state'])}; NCSN++ / "
            "DDPM++ have no batch statistics, so it must be empty", path=path, field="model_state",
            unexpected=keys)
    params = _flatten(opt["target"], path, "optimizer/target")
    ema = _flatten(top["params_ema"], path, "params_ema")
    if list(ema) != list(params):
        only_p = [k for k in params if k not in ema]
        only_e = [k for k in ema if k not in params]
        raise CorruptCheckpointError(
            f"{path}: params_ema and optimizer/target differ in their leaves (only in target: "
            f"{only_p[:5]}; only in params_ema: {only_e[:5]})", path=path)
    states = _flatten(opt["state"]["param_states"], path, "optimizer/state/param_states")
    expected = [f"{k}/{m}" for k in params for m in ("grad_ema", "grad_sq_ema")]
    if sorted(states) != sorted(expected):
        odd = sorted(set(states) ^ set(expected))[:5]
        raise CorruptCheckpointError(
            f"{path}: optimizer/state/param_states is not one {{grad_ema, grad_sq_ema}} per "
            f"parameter (differs at {odd})", path=path)
    for k, a in params.items():
        for other, tree in (("params_ema", ema[k]), ("grad_ema", states[f"{k}/grad_ema"]),
                            ("grad_sq_ema", states[f"{k}/grad_sq_ema"])):
            if tree.shape != a.shape:
                raise CorruptCheckpointError(f"{path}: {other} of {k} has shape {list(tree.shape)}, "
                                             f"the parameter {list(a.shape)}", path=path)
    # the scalars are float32 in the file: take the shortest decimal that is that float32
    # (0.9999, not 0.99989998), the value the config held
    step = check_step(_scalar(top["step"], "step", path).tensor, path, "step")
    adam_step = check_step(_scalar(opt["state"]["step"], "optimizer/state/step", path).tensor, path,
                           "optimizer/state/step")
    lr = _decimal(check_positive_float(_scalar(top["lr"], "lr", path).tensor, path, "lr"), top["lr"])
    ema_rate = _decimal(check_fraction(_scalar(top["ema_rate"], "ema_rate", path).tensor, path,
                                       "ema_rate"), top["ema_rate"])
    if not isinstance(top["rng"], _FlaxArray):
        raise CorruptCheckpointError(f"{path}: field 'rng' must be an array (a PRNG key), got "
                                     f"{_describe(top['rng'])}", path=path, field="rng")

    def tensors(d: "OrderedDict[str, _FlaxArray]", suffix: str = "") -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict((k, d[k + suffix].tensor) for k in params)

    return FlaxState(step=step, params=tensors(params), params_ema=tensors(ema),
                     grad_ema=tensors(states, "/grad_ema"), grad_sq_ema=tensors(states, "/grad_sq_ema"),
                     adam_step=adam_step, lr=lr, ema_rate=ema_rate,
                     dtypes={k: a.dtype_name for k, a in params.items()})

"""The one way fpdiff reads a pickle: an allow-list of constructors and an unpickler that can only
build fresh objects with them.

A pickle is a program: it can name any importable callable and call it (``os.system``), and its
``BUILD`` / ``SETITEM(S)`` / ``APPEND(S)`` opcodes mutate whatever object is on the stack — a
class named by ``GLOBAL`` included (``setattr(torch.TypedStorage, "size", …)`` would poison every
later save of the process). Checkpoints (``fpdiff.checkpoints``) and the pickled batches of
CIFAR-10 / ImageNet32 (``fpdiff.data``) both go through :class:`SafeUnpickler`:

* ``find_class`` resolves only :data:`ALLOWED` names, and every entry is a *constructor function*
  or an immutable constant (a dtype) — never a class or a module, so nothing the file names can
  be mutated;
* ``BUILD`` reaches only objects the unpickler created itself, of three kinds: a NumPy array
  (its numeric state is checked first), a ``dict`` / ``OrderedDict`` (plain attributes such as a
  state dict's ``_metadata``) and a NumPy dtype (its state is checked against the dtype, nothing
  is applied); ``SETITEM(S)``, ``APPEND(S)`` and ``ADDITEMS`` only fresh dicts, lists and sets;
  ``NEWOBJ`` and the extension registry are refused;
* a read never asks for more bytes than the source has left (``BINBYTES8`` cannot allocate what
  the file does not hold).

What the list holds: torch tensors (``torch._utils._rebuild_*``, resolved by the torch reader to
its own rebuild functions), storage types and dtypes, ``torch.Size``, ``OrderedDict``; NumPy
arrays, scalars and dtypes of numeric kinds (bool, int, uint, float, complex) — Score SDE stores
its warm-up learning rate as ``np.float64``, the image batches are ``uint8`` arrays; and
``_codecs.encode`` limited to str → latin-1 (how protocol 2 writes bytes).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections import OrderedDict
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = [
    "UnsafePickleError", "SafeUnpickler", "ALLOWED", "allowed_global_names", "NUMERIC_KINDS",
    "StorageKind", "scan_pickle_globals", "safe_loads",
]

#: NumPy dtype kinds a file may hold: bool, signed / unsigned int, float, complex
NUMERIC_KINDS = "biufc"
#: longest protocol-0 text line (a GLOBAL name, a decimal number) a file may hold
_MAX_LINE = 1 << 16


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something outside the allow-list; it was refused before it ran.

    ``globals`` names what was asked for (a global, an opcode on a protected object)."""

    def __init__(self, message: str, globals: Optional[List[str]] = None):
        super().__init__(message)
        self.globals = list(globals or [])


# ----------------------------------------------------------------------------------------------
# the constructors the allow-list resolves to

def _numeric_dtype(dt: Any) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.kind not in NUMERIC_KINDS or dt.fields is not None \
            or dt.subdtype is not None:
        raise UnsafePickleError(f"refused NumPy dtype {dt!r}: only numeric scalar dtypes are allowed",
                                ["numpy.dtype"])
    return dt


def _np_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype(spec)`` for a plain numeric type code such as ``'f8'``."""
    if not isinstance(spec, str) or len(spec) > 8:
        raise UnsafePickleError(f"refused NumPy dtype spec {spec!r}: only type-code strings",
                                ["numpy.dtype"])
    try:
        dt = np.dtype(spec)
    except TypeError:
        raise UnsafePickleError(f"refused NumPy dtype spec {spec!r}", ["numpy.dtype"]) from None
    return _numeric_dtype(dt)


def _np_scalar(dtype: Any, raw: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, raw bytes)`` for numeric dtypes."""
    _numeric_dtype(dtype)
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != dtype.itemsize:
        raise UnsafePickleError("refused NumPy scalar: its payload is not the dtype's raw bytes",
                                ["numpy.core.multiarray.scalar"])
    return np.frombuffer(bytes(raw), dtype=dtype)[0]


class _NdarrayType:
    """Stands for ``numpy.ndarray`` where a pickle names it (the subtype argument of
    ``_reconstruct``); it is not the class, so nothing can be built or mutated through it."""
    __slots__ = ()


_NDARRAY = _NdarrayType()


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct``: an empty plain array that BUILD then fills."""
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refused array subtype {subtype!r}: only numpy.ndarray",
                                ["numpy.core.multiarray._reconstruct"])
    if isinstance(dtype, (bytes, str)):
        dtype = _np_dtype(dtype.decode("ascii") if isinstance(dtype, bytes) else dtype)
    return np.ndarray.__new__(np.ndarray, (0,), _numeric_dtype(dtype))


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays): a copy of the bytes, reshaped."""
    dt = _numeric_dtype(dtype)
    shape = _check_shape(shape, "numpy array")
    if not isinstance(buf, (bytes, bytearray)) or len(buf) != _numel(shape) * dt.itemsize:
        raise pickle.UnpicklingError(f"NumPy array of shape {list(shape)} {dt}: its buffer holds "
                                     f"{len(buf) if isinstance(buf, (bytes, bytearray)) else '?'} bytes")
    return np.frombuffer(bytes(buf), dtype=dt).reshape(shape, order="F" if order == "F" else "C")


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes: str → latin-1, nothing else."""
    if not isinstance(text, str) or not isinstance(encoding, str) or \
            encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise UnsafePickleError("refused _codecs.encode other than str -> latin-1", ["_codecs.encode"])
    return text.encode("latin-1")


def _ordered_dict(items: Any = ()) -> OrderedDict:
    """``collections.OrderedDict(items)`` (a fresh one every call)."""
    if isinstance(items, dict):
        return OrderedDict(items)
    if not isinstance(items, (list, tuple)):
        raise pickle.UnpicklingError("OrderedDict from something other than pairs")
    return OrderedDict(items)


def _torch_size(dims: Any = ()) -> torch.Size:
    return torch.Size(_check_shape(dims, "torch.Size"))


class StorageKind:
    """What a ``torch.<X>Storage`` name resolves to: its element type, nothing callable."""
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("StorageKind is immutable")

    def __repr__(self) -> str:
        return f"StorageKind({self.name})"


_STORAGE_DTYPES: Dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}

#: tensor rebuild functions; the torch reader supplies them (a data file has no storages)
TENSOR_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3",
                     "_rebuild_parameter", "_rebuild_parameter_with_state")


def _build_allowed() -> Dict[str, Any]:
    rc: Dict[str, Any] = {
        "collections.OrderedDict": _ordered_dict,
        "torch.Size": _torch_size,
        "_codecs.encode": _latin1_encode,
        "numpy.dtype": _np_dtype,
        "numpy.ndarray": _NDARRAY,
    }
    for name in dir(torch):
        obj = getattr(torch, name, None)
        if isinstance(obj, torch.dtype):
            rc[f"torch.{name}"] = obj            # immutable singletons, passed as arguments only
    for short, dt in _STORAGE_DTYPES.items():
        rc[f"torch.{short}"] = StorageKind(short, dt)
    for fname in TENSOR_REBUILDERS:
        rc[f"torch._utils.{fname}"] = fname      # a placeholder: SafeUnpickler asks its tensor_builder
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):   # numpy < 2 and >= 2 spellings
        rc[f"{mod}.scalar"] = _np_scalar
        rc[f"{mod}._reconstruct"] = _np_reconstruct
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        rc[f"{mod}._frombuffer"] = _np_frombuffer
    dtypes_mod = getattr(np, "dtypes", None)      # numpy >= 1.25 pickles dtypes through their class
    if dtypes_mod is not None:
        for code in "?bBhHiIlLqQefdgFDG":
            cls = type(np.dtype(code))
            if cls is not np.dtype:
                rc[f"numpy.dtypes.{cls.__name__}"] = _np_dtype
    return rc


#: 'module.name' → the constructor or constant a pickle gets for it
ALLOWED: Dict[str, Any] = _build_allowed()


def allowed_global_names() -> List[str]:
    return sorted(ALLOWED)


# ----------------------------------------------------------------------------------------------
# small checks shared by the constructors and the torch reader

def _check_shape(dims: Any, what: str, max_ndim: int = 32) -> Tuple[int, ...]:
    if not isinstance(dims, (tuple, list, torch.Size)) or len(dims) > max_ndim or \
            not all(type(d) is int and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"{what}: the shape {dims!r} is not a list of non-negative ints")
    return tuple(dims)


def _numel(shape: Tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ----------------------------------------------------------------------------------------------
# reading without over-reading

class _BoundedReader:
    """``read`` / ``readline`` over a file that refuse to ask for more than what is left."""

    def __init__(self, fh: BinaryIO, size: int):
        self._fh = fh
        self._end = size

    def _left(self) -> int:
        return self._end - self._fh.tell()

    def read(self, n: int = -1) -> bytes:
        left = self._left()
        if n is None or n < 0:
            n = left
        if n > left:
            raise pickle.UnpicklingError(f"truncated: the pickle declares {n} bytes where {left} remain")
        return self._fh.read(n)

    def readinto(self, buf: Any) -> int:
        if len(buf) > self._left():
            raise pickle.UnpicklingError("truncated: the pickle declares more bytes than remain")
        return self._fh.readinto(buf)

    def readline(self) -> bytes:
        line = self._fh.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise pickle.UnpicklingError("a text opcode's line is longer than any a checkpoint holds")
        return line

    def peek(self, n: int = 0) -> bytes:  # pragma: no cover - only the C unpickler peeks
        return b""


def _stream_size(fh: BinaryIO) -> int:
    if isinstance(fh, io.BytesIO):
        return len(fh.getbuffer())
    try:
        return os.fstat(fh.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pos = fh.tell()
        end = fh.seek(0, io.SEEK_END)
        fh.seek(pos)
        return end


# ----------------------------------------------------------------------------------------------
# the unpickler

TensorBuilder = Callable[[str, tuple], Any]
StorageLoader = Callable[..., Any]

_REFUSE_OPS = {pickle.NEWOBJ[0]: "NEWOBJ", pickle.NEWOBJ_EX[0]: "NEWOBJ_EX",
               pickle.EXT1[0]: "EXT1", pickle.EXT2[0]: "EXT2", pickle.EXT4[0]: "EXT4"}


class SafeUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """An unpickler that resolves :data:`ALLOWED` only and mutates only what it created.

    ``tensor_builder(name, args)`` builds tensors for the ``torch._utils._rebuild_*`` names;
    ``storage_loader(kind, *rest)`` answers persistent ids ``('storage', kind, …)``. Without them
    a file holding tensors is refused. The pure-Python unpickler is used because its opcodes can
    be checked one by one; the pickles fpdiff reads are small (tensor data lives outside them).
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: BinaryIO, *, size: Optional[int] = None,
                 tensor_builder: Optional[TensorBuilder] = None,
                 storage_loader: Optional[StorageLoader] = None, encoding: str = "utf-8"):
        size = _stream_size(file) if size is None else size
        super().__init__(_BoundedReader(file, size), encoding=encoding)
        self._tensor_builder = tensor_builder
        self._storage_loader = storage_loader

    # -- names ---------------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        obj = ALLOWED.get(key)
        if obj is None:
            raise UnsafePickleError(f"refused global {key}: it is not on the allow-list; nothing "
                                    "was executed", [key])
        if isinstance(obj, str):                   # a tensor rebuild function
            if self._tensor_builder is None:
                raise UnsafePickleError(f"refused global {key}: this file may not hold tensors", [key])
            builder = self._tensor_builder
            return lambda *args: builder(obj, args)
        return obj

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_loader is None or not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError("unexpected persistent id in a plain pickle")
        tag = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if tag != "storage":
            raise UnsafePickleError(f"refused persistent object of type {tag!r} (only storages)",
                                    [str(tag)])
        if len(pid) < 2 or not isinstance(pid[1], StorageKind):
            raise pickle.UnpicklingError("storage of unknown type")
        return self._storage_loader(pid[1], *pid[2:])

    # -- opcodes that mutate an object on the stack --------------------------------------------
    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if type(inst) is np.ndarray:
            _check_array_state(state)
            inst.__setstate__(state)
        elif type(inst) in (dict, OrderedDict):
            # plain attributes of a fresh mapping, e.g. a state dict's ``_metadata``
            if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
                state = state[0]
            if not isinstance(state, dict) or not all(
                    type(k) is str and not k.startswith("__") for k in state):
                raise UnsafePickleError("refused BUILD: a mapping's state must be plain attributes",
                                        ["BUILD"])
            if type(inst) is dict:
                raise UnsafePickleError("refused BUILD on a plain dict", ["BUILD"])
            inst.__dict__.update(state)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)        # checked, never applied
        else:
            raise UnsafePickleError(f"refused BUILD on {type(inst).__module__}.{type(inst).__name__}: "
                                    "only arrays and mappings the file created may be filled in",
                                    ["BUILD"])

    dispatch[pickle.BUILD[0]] = load_build

    def _target(self, kinds: tuple, op: str) -> Any:
        target = self.stack[-1]
        if type(target) not in kinds:
            raise UnsafePickleError(f"refused {op} on {type(target).__name__}: only on a "
                                    f"{' / '.join(k.__name__ for k in kinds)} the file created", [op])
        return target

    def load_setitem(self) -> None:
        stack = self.stack
        value = stack.pop()
        key = stack.pop()
        self._target((dict, OrderedDict), "SETITEM")[key] = value

    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target((dict, OrderedDict), "SETITEMS")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target((list,), "APPEND").append(value)

    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target((list,), "APPENDS").extend(items)

    dispatch[pickle.APPENDS[0]] = load_appends

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._target((set,), "ADDITEMS").update(items)

    dispatch[pickle.ADDITEMS[0]] = load_additems


def _refuser(name: str) -> Callable[[Any], None]:
    def refuse(self: Any) -> None:
        raise UnsafePickleError(f"refused opcode {name}: a checkpoint or data file never needs it",
                                [name])
    return refuse


for _code, _name in _REFUSE_OPS.items():
    SafeUnpickler.dispatch[_code] = _refuser(_name)


def _check_array_state(state: Any) -> None:
    """NumPy's array state ``(version, shape, dtype, fortran, raw bytes)``, numeric only."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise UnsafePickleError("refused NumPy array state of an unknown form", ["BUILD"])
    _, shape, dtype, _, raw = state
    shape = _check_shape(shape, "NumPy array")
    dt = _numeric_dtype(dtype)
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != _numel(shape) * dt.itemsize:
        raise UnsafePickleError("refused NumPy array state: its data is not the shape's raw bytes",
                                ["BUILD"])


def _check_dtype_state(dt: np.dtype, state: Any) -> None:
    """A dtype's pickled state must describe the dtype it was built as (native byte order)."""
    ok = isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", "|", "=") and \
        all(s is None for s in state[2:5])
    if not ok:
        raise UnsafePickleError(f"refused NumPy dtype state {state!r} for {dt}: only native-order "
                                "numeric dtypes", ["BUILD"])


def safe_loads(data: bytes, *, encoding: str = "utf-8") -> Any:
    """Unpickle plain values (no tensors) from bytes with :class:`SafeUnpickler`."""
    return SafeUnpickler(io.BytesIO(data), size=len(data), encoding=encoding).load()


# ----------------------------------------------------------------------------------------------
# a static scan: which globals a pickle names (nothing is executed)

_MARK = object()


def scan_pickle_globals(data: bytes | BinaryIO, *, source: str = "pickle") -> Tuple[List[str], int]:
    """Globals ('module.name') the pickle at the start of ``data`` references, and its length.

    Simulates the unpickler's stack abstractly (strings tracked, everything else opaque) so that
    ``STACK_GLOBAL`` operands are known; an unresolvable one, or an extension-registry code, is
    reported as ``<…>`` (and so refused). Raises ``pickle.UnpicklingError`` for a malformed or
    truncated stream.
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    start = stream.tell()
    stack: List[Any] = []
    memo: Dict[Any, Any] = {}
    found: List[str] = []

    def pop(n: int = 1) -> List[Any]:
        if len(stack) < n:
            raise pickle.UnpicklingError(f"malformed {source}: stack underflow")
        out = stack[-n:] if n else []
        del stack[len(stack) - n:]
        return out

    def pop_mark() -> None:
        while stack:
            if stack.pop() is _MARK:
                return
        raise pickle.UnpicklingError(f"malformed {source}: missing MARK")

    text_ops = ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                "SHORT_BINSTRING")
    try:
        for op, arg, pos in pickletools.genops(stream):
            name = op.name
            if name in ("GLOBAL", "INST"):
                mod, _, attr = str(arg).partition(" ")
                found.append(f"{mod}.{attr}")
                if name == "INST":
                    pop_mark()
                stack.append(None)
                continue
            if name == "STACK_GLOBAL":
                mod, attr = pop(2)
                found.append(f"{mod}.{attr}" if isinstance(mod, str) and isinstance(attr, str)
                             else f"<unresolvable STACK_GLOBAL at byte {pos}>")
                stack.append(None)
                continue
            if name in ("EXT1", "EXT2", "EXT4"):
                found.append(f"<extension-registry code {arg} at byte {pos}>")
                stack.append(None)
                continue
            if name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                if not stack:
                    raise pickle.UnpicklingError(f"malformed {source}: memoising an empty stack")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg))
                continue
            if name == "DUP":
                stack.append(stack[-1] if stack else None)
                continue
            before = op.stack_before
            if pickletools.markobject in before:
                pop_mark()
                pop(before.index(pickletools.markobject))
            else:
                pop(len(before))
            for item in op.stack_after:
                if item is pickletools.markobject:
                    stack.append(_MARK)
                elif name in text_ops:
                    stack.append(arg if isinstance(arg, str) else None)
                else:
                    stack.append(None)
    except pickle.UnpicklingError:
        raise
    except Exception as e:  # genops raises ValueError on bad or truncated opcodes
        raise pickle.UnpicklingError(f"malformed or truncated {source}: {e}") from None
    return found, stream.tell() - start

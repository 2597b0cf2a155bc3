"""Loading ``torch.save`` files without ever running a full unpickler.

A checkpoint is a pickle, and a pickle can name any importable callable (``os.system``) and call it.
fpdiff therefore loads a user's file in two steps:

1. **Scan** the pickle opcodes (``pickletools.genops`` reads them, executes nothing) and collect
   every global the file references; refuse the file, naming the offenders, if any is outside the
   allow-list. TorchScript archives, unreadable zips and files that are not ``torch.save`` output
   are refused here too, with their own error.
2. **Load** with a restricted unpickler whose ``find_class`` resolves only the allow-list. fpdiff
   reads the zip (torch ≥ 1.6) and legacy formats itself rather than through ``torch.load``, so the
   code path is the same on torch 1.13 and 2.x: torch 1.13's ``torch.load`` silently replaces a
   custom ``pickle_module`` by ``pickle`` unless ``weights_only=True``, and its weights-only
   unpickler cannot be taught NumPy scalars (torch ≥ 2.4's ``add_safe_globals`` could, but one
   implementation tested everywhere beats two).

The allow-list is what torch's weights-only loader accepts (tensors, storages, dtypes, ``OrderedDict``,
``torch.Size``, the ``torch._utils._rebuild_*`` functions) plus exactly what a NumPy float64 scalar
needs — Score SDE stores its warm-up learning rate as ``np.float64`` (``np.minimum``):
``numpy.core.multiarray.scalar`` and ``numpy.dtype`` (numeric dtypes only) and ``_codecs.encode``
(latin-1 only, how protocol 2 stores bytes). Nothing else.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = [
    "CheckpointError", "NotACheckpointError", "CorruptCheckpointError", "UnsafeCheckpointError",
    "scan_pickle_globals", "inspect_file", "safe_torch_load", "allowed_global_names",
    "RestrictedUnpickler", "FileReport",
]


# ----------------------------------------------------------------------------------------------
# errors (a stable ``code`` for the worker's typed error replies)

class CheckpointError(Exception):
    code = "checkpoint_error"

    def __init__(self, message: str, path: Optional[str] = None, **details: Any):
        super().__init__(message)
        self.path = path
        self.details = details

    def to_dict(self) -> dict:
        return {"code": self.code, "message": str(self), "path": self.path, **self.details}


class NotACheckpointError(CheckpointError):
    """The file is not a ``torch.save`` checkpoint at all (random bytes, TorchScript, …)."""
    code = "not_a_checkpoint"


class CorruptCheckpointError(CheckpointError):
    """The file looks like a checkpoint but is truncated or damaged."""
    code = "corrupt_checkpoint"


class UnsafeCheckpointError(CheckpointError):
    """The file references code outside the allow-list; it was refused without running it."""
    code = "unsafe_checkpoint"


# ----------------------------------------------------------------------------------------------
# the allow-list

_NUMERIC_KINDS = "biufc"          # bool, int, uint, float, complex


def _checked_dtype(dt: np.dtype) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.kind not in _NUMERIC_KINDS or dt.fields is not None:
        raise pickle.UnpicklingError(f"refused NumPy dtype {dt!r}: only numeric scalar dtypes are allowed")
    return dt


def _np_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """``numpy.dtype`` limited to plain numeric type codes such as ``'f8'``."""
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"refused NumPy dtype spec {spec!r}: only type-code strings")
    return _checked_dtype(np.dtype(spec, align, copy))


def _np_scalar(dtype: Any, raw: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` limited to numeric dtypes and raw bytes."""
    _checked_dtype(dtype)
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != dtype.itemsize:
        raise pickle.UnpicklingError("refused NumPy scalar: payload is not the dtype's raw bytes")
    return np.frombuffer(bytes(raw), dtype=dtype)[0]


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to what protocol-2 pickles use for bytes: str -> latin-1."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode call other than str -> latin-1")
    return text.encode("latin-1")


def _numpy_dtype_classes() -> Dict[str, Any]:
    """numpy ≥ 1.25 pickles a dtype through its class (``numpy.dtypes.Float64DType``)."""
    out: Dict[str, Any] = {}
    dtypes_mod = getattr(np, "dtypes", None)
    if dtypes_mod is None:
        return out
    for code in ("?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d", "g", "F", "D", "G"):
        cls = type(np.dtype(code))
        if cls is not np.dtype:
            out[f"numpy.dtypes.{cls.__name__}"] = cls
    return out


_ALLOWED_CACHE: Optional[Dict[str, Any]] = None


def _allowed_globals() -> Dict[str, Any]:
    """'module.name' -> object the restricted unpickler may return for it."""
    global _ALLOWED_CACHE
    if _ALLOWED_CACHE is not None:
        return _ALLOWED_CACHE
    rc: Dict[str, Any] = {
        "collections.OrderedDict": OrderedDict,
        "torch.Size": torch.Size,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
    }
    for fname in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3",
                  "_rebuild_parameter", "_rebuild_parameter_with_state"):
        # resolved by the loader to fpdiff's own rebuild functions (see _loader_globals)
        rc[f"torch._utils.{fname}"] = getattr(torch._utils, fname, fname)
    for name in dir(torch):
        obj = getattr(torch, name, None)
        if isinstance(obj, torch.dtype):
            rc[f"torch.{name}"] = obj
        elif name.endswith("Storage") and isinstance(obj, type):
            rc[f"torch.{name}"] = obj
    # NumPy: the float64 scalar Score SDE stores as the learning rate, nothing more
    rc["numpy.core.multiarray.scalar"] = _np_scalar
    rc["numpy._core.multiarray.scalar"] = _np_scalar       # spelling of pickles from numpy ≥ 2
    rc["numpy.dtype"] = _np_dtype
    for name in _numpy_dtype_classes():
        rc[name] = _np_dtype
    rc["_codecs.encode"] = _latin1_encode
    _ALLOWED_CACHE = rc
    return rc


def allowed_global_names() -> List[str]:
    return sorted(_allowed_globals())


# ----------------------------------------------------------------------------------------------
# step 1: scan a pickle's opcodes for the globals it references (nothing is executed)

_MARK = object()


def scan_pickle_globals(data: bytes | io.BufferedIOBase, *, source: str = "pickle") -> Tuple[List[str], int]:
    """Globals ('module.name') referenced by the pickle at the start of ``data``, and its length.

    Simulates the unpickler's stack abstractly (strings tracked, everything else opaque) so that
    ``STACK_GLOBAL`` operands are known. A global whose name cannot be determined, or an opcode
    that consults the extension registry, is reported as ``<unresolvable …>`` (and so refused).
    Raises ``CorruptCheckpointError`` if the pickle stream is malformed or truncated.
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    start = stream.tell()
    stack: List[Any] = []
    memo: Dict[Any, Any] = {}
    found: List[str] = []

    def pop(n: int = 1) -> List[Any]:
        if len(stack) < n:
            raise CorruptCheckpointError(f"malformed {source}: stack underflow")
        out = stack[-n:] if n else []
        del stack[len(stack) - n:]
        return out

    def pop_mark() -> None:
        while stack:
            if stack.pop() is _MARK:
                return
        raise CorruptCheckpointError(f"malformed {source}: missing MARK")

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
                if isinstance(mod, str) and isinstance(attr, str):
                    found.append(f"{mod}.{attr}")
                else:
                    found.append(f"<unresolvable STACK_GLOBAL at byte {pos}>")
                stack.append(None)
                continue
            if name in ("EXT1", "EXT2", "EXT4"):
                found.append(f"<extension-registry code {arg} at byte {pos}>")
                stack.append(None)
                continue
            if name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                if not stack:
                    raise CorruptCheckpointError(f"malformed {source}: memoising an empty stack")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg))
                continue
            if name == "DUP":
                stack.append(stack[-1] if stack else None)
                continue
            # generic stack effect from the opcode's declared signature
            before = op.stack_before
            if pickletools.markobject in before:
                pop_mark()
                pop(before.index(pickletools.markobject))
            else:
                pop(len(before))
            for item in op.stack_after:
                if item is pickletools.markobject:
                    stack.append(_MARK)
                elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                              "STRING", "BINSTRING", "SHORT_BINSTRING"):
                    stack.append(arg if isinstance(arg, str) else None)
                else:
                    stack.append(None)
    except CorruptCheckpointError:
        raise
    except Exception as e:  # ValueError from genops on bad/truncated opcodes, struct errors …
        raise CorruptCheckpointError(f"malformed or truncated {source}: {e}") from None
    return found, stream.tell() - start


def _refuse_unsafe(names: List[str], path: Optional[str], where: str) -> None:
    allowed = _allowed_globals()
    bad = [n for n in dict.fromkeys(names) if n not in allowed]
    if bad:
        listed = ", ".join(bad[:8]) + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else "")
        raise UnsafeCheckpointError(
            f"refused to load {path or 'the file'}: its {where} references {listed}, which is not "
            "allowed in a checkpoint (only tensors, plain Python values and NumPy numeric scalars "
            "are); nothing in the file was executed",
            path=path, globals=bad)


# ----------------------------------------------------------------------------------------------
# format detection + full scan

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class FileReport:
    path: str
    format: str                        # 'zip' (torch >= 1.6) | 'legacy' (torch < 1.6)
    bytes: int
    globals: List[str] = field(default_factory=list)
    records: int = 0


def _zip_main_pickle(zf: zipfile.ZipFile, path: str) -> str:
    names = zf.namelist()
    if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names) or \
            any("/code/" in n for n in names):
        raise NotACheckpointError(
            f"{path} is a TorchScript archive, not a checkpoint (fpdiff never runs TorchScript code "
            "from a file)", path=path)
    pkl = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
    if len(pkl) != 1:
        raise NotACheckpointError(f"{path} is a zip archive but not a torch.save checkpoint "
                                  "(no data.pkl record)", path=path)
    return pkl[0]


def inspect_file(path: str, *, verify: bool = True) -> FileReport:
    """Classify the file and scan every pickle in it; raise the specific error if unusable.

    ``verify`` also checks every zip record's CRC (reads the whole file once).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if os.path.isdir(path):
        raise NotACheckpointError(f"{path} is a directory, not a checkpoint file", path=path)
    size = os.path.getsize(path)
    if size == 0:
        raise NotACheckpointError(f"{path} is empty", path=path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK":
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise CorruptCheckpointError(
                f"{path} is truncated or corrupt: it starts like a torch.save zip but its zip "
                f"directory cannot be read ({e})", path=path) from None
        with zf:
            main = _zip_main_pickle(zf, path)
            try:
                data = zf.read(main)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise CorruptCheckpointError(f"{path} is corrupt: cannot read {main} ({e})",
                                             path=path) from None
            found, _ = scan_pickle_globals(data, source=f"{path}:{main}")
            _refuse_unsafe(found, path, "pickle")
            if verify:
                for info in zf.infolist():
                    try:
                        with zf.open(info) as rec:
                            while rec.read(1 << 22):
                                pass
                    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                        raise CorruptCheckpointError(
                            f"{path} is corrupt: record {info.filename} fails its check ({e})",
                            path=path) from None
            return FileReport(path, "zip", size, sorted(set(found)), len(zf.infolist()))
    if head[:1] == b"\x80":
        # legacy format: magic number, protocol version, sys info, the object, storage keys
        found_all: List[str] = []
        with open(path, "rb") as fh:
            for i in range(5):
                found, _ = scan_pickle_globals(fh, source=f"{path} (pickle {i + 1})")
                _refuse_unsafe(found, path, f"pickle #{i + 1}")
                found_all += found
                if i == 0:
                    end = fh.tell()
                    fh.seek(0)
                    try:
                        magic = RestrictedUnpickler(fh).load()
                    except Exception:
                        magic = None
                    fh.seek(end)
                    if magic != _LEGACY_MAGIC:
                        raise NotACheckpointError(
                            f"{path} is a pickle but not a torch.save checkpoint", path=path)
        return FileReport(path, "legacy", size, sorted(set(found_all)))
    raise NotACheckpointError(
        f"{path} is not a PyTorch checkpoint (unrecognised header {head!r}; expected a torch.save "
        "zip archive or legacy pickle)", path=path)


# ----------------------------------------------------------------------------------------------
# step 2: restricted loading
#
# fpdiff reads torch.save files itself instead of calling torch.load: torch 1.13's torch.load
# silently ignores a custom ``pickle_module`` unless ``weights_only=True`` (it resets it to
# ``pickle``), and its weights-only unpickler cannot be extended to NumPy scalars. Reading the
# format directly is short, identical on every torch version, and never hands a user's bytes to a
# full unpickler. Storages become flat tensors; ``_rebuild_tensor_v2`` becomes ``as_strided``.

_STORAGE_DTYPES: Dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}


@dataclass(frozen=True)
class _StorageKind:
    """What a ``torch.<X>Storage`` global resolves to: just its element type."""
    name: str
    dtype: torch.dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any,
                    requires_grad: bool = False, backward_hooks: Any = None,
                    metadata: Any = None) -> torch.Tensor:
    if not torch.is_tensor(storage):
        raise pickle.UnpicklingError("tensor data does not come from a storage record")
    t = storage.as_strided(tuple(size), tuple(stride), int(offset))
    if requires_grad and t.is_floating_point():
        t.requires_grad_(True)
    return t


def _rebuild_tensor_v3(storage: torch.Tensor, offset: int, size: Any, stride: Any,
                       requires_grad: bool, backward_hooks: Any, dtype: Any,
                       metadata: Any = None) -> torch.Tensor:
    """torch ≥ 2.1 writes dtypes without a typed storage (uint16, float8 …) this way."""
    if not isinstance(dtype, torch.dtype) or not torch.is_tensor(storage):
        raise pickle.UnpicklingError("malformed tensor record")
    flat = storage.view(torch.uint8).view(dtype) if storage.dtype != dtype else storage
    return _rebuild_tensor(flat, offset, size, stride, requires_grad)


def _rebuild_tensor_v1(storage: torch.Tensor, offset: int, size: Any, stride: Any) -> torch.Tensor:
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any = None,
                       state: Any = None) -> torch.nn.Parameter:
    if not torch.is_tensor(data):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))



def _loader_globals() -> Dict[str, Any]:
    """The allow-list as the loader resolves it (torch's rebuild functions replaced by ours)."""
    rc = dict(_allowed_globals())
    rc["torch._utils._rebuild_tensor_v2"] = _rebuild_tensor
    rc["torch._utils._rebuild_tensor"] = _rebuild_tensor_v1
    rc["torch._utils._rebuild_tensor_v3"] = _rebuild_tensor_v3
    rc["torch._utils._rebuild_parameter"] = _rebuild_parameter
    rc["torch._utils._rebuild_parameter_with_state"] = _rebuild_parameter
    rc["torch.nn.parameter.Parameter"] = torch.nn.Parameter
    for name in list(rc):
        short = name[len("torch."):]
        if name.startswith("torch.") and short in _STORAGE_DTYPES:
            rc[name] = _StorageKind(short, _STORAGE_DTYPES[short])
    for short, dt in _STORAGE_DTYPES.items():
        rc.setdefault(f"torch.{short}", _StorageKind(short, dt))
    return rc


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves the allow-list only.

    ``storage_loader(kind, key, location, numel, view)`` supplies flat tensors for persistent ids.
    """

    def __init__(self, file, *, storage_loader: Optional[Callable[..., torch.Tensor]] = None,
                 **kwargs):
        super().__init__(file, **kwargs)
        self._storage_loader = storage_loader
        self._globals = _loader_globals()

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        obj = self._globals.get(key)
        if obj is None:
            raise UnsafeCheckpointError(
                f"refused global {key}: not allowed in a checkpoint; nothing was executed",
                globals=[key])
        return obj

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_loader is None or not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError("unexpected persistent id in a plain pickle")
        tag = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if tag != "storage":
            raise UnsafeCheckpointError(f"refused persistent object of type {tag!r} (only storages)",
                                        globals=[str(tag)])
        kind = pid[1]
        if not isinstance(kind, _StorageKind):
            raise pickle.UnpicklingError("storage of unknown type")
        return self._storage_loader(kind, *pid[2:])


def _check_byteorder(order: Optional[bytes], path: str) -> None:
    import sys
    if order is not None and order.decode("ascii", "replace").strip() != sys.byteorder:
        raise CorruptCheckpointError(f"{path} was written on a {order!r}-endian machine; "
                                     "byte swapping is not supported", path=path)


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        main = _zip_main_pickle(zf, path)
        prefix = main[: -len("data.pkl")]
        names = set(zf.namelist())
        if prefix + "byteorder" in names:
            _check_byteorder(zf.read(prefix + "byteorder"), path)
        cache: Dict[str, torch.Tensor] = {}

        def load_storage(kind: _StorageKind, key: Any, location: Any, numel: Any,
                         *rest: Any) -> torch.Tensor:
            key = key.decode("ascii") if isinstance(key, bytes) else str(key)
            if key in cache:
                return cache[key].view(kind.dtype) if cache[key].dtype != kind.dtype else cache[key]
            rec = f"{prefix}data/{key}"
            if rec not in names:
                raise CorruptCheckpointError(f"{path} is corrupt: storage record {rec} is missing",
                                             path=path)
            info = zf.getinfo(rec)
            elem = torch.empty((), dtype=kind.dtype).element_size()
            if not isinstance(numel, int) or numel < 0 or info.file_size != numel * elem:
                raise CorruptCheckpointError(
                    f"{path} is corrupt: record {rec} holds {info.file_size} bytes, expected "
                    f"{numel} x {elem}", path=path)
            buf = bytearray(info.file_size)
            if buf:
                with zf.open(info) as fh:
                    got = fh.readinto(memoryview(buf))
                if got != info.file_size:
                    raise CorruptCheckpointError(f"{path} is truncated: record {rec}", path=path)
                flat = torch.frombuffer(buf, dtype=torch.uint8).view(kind.dtype)
            else:
                flat = torch.empty(0, dtype=kind.dtype)
            cache[key] = flat
            return flat

        data = zf.read(main)
        return RestrictedUnpickler(io.BytesIO(data), storage_loader=load_storage,
                                   encoding="utf-8").load()


def _read_legacy(path: str) -> Any:
    with open(path, "rb") as fh:
        def plain() -> Any:
            return RestrictedUnpickler(fh, encoding="utf-8").load()

        if plain() != _LEGACY_MAGIC:
            raise NotACheckpointError(f"{path} is a pickle but not a torch.save checkpoint", path=path)
        if plain() != 1001:
            raise NotACheckpointError(f"{path}: unsupported legacy protocol version", path=path)
        sys_info = plain()
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            _check_byteorder(b"big", path)
        roots: Dict[str, torch.Tensor] = {}
        views: Dict[str, torch.Tensor] = {}

        def load_storage(kind: _StorageKind, root_key: Any, location: Any, numel: Any,
                         view: Any = None) -> torch.Tensor:
            root_key = str(root_key)
            if root_key not in roots:
                roots[root_key] = torch.empty(int(numel), dtype=kind.dtype)
            base = roots[root_key]
            if view is None:
                return base
            view_key, offset, size = view
            if str(view_key) not in views:
                views[str(view_key)] = base[int(offset): int(offset) + int(size)]
            return views[str(view_key)]

        obj = RestrictedUnpickler(fh, storage_loader=load_storage, encoding="utf-8").load()
        keys = plain()
        for key in keys:
            base = roots.get(str(key))
            if base is None:
                raise CorruptCheckpointError(f"{path} is corrupt: storage {key} has no data", path=path)
            head = fh.read(8)
            if len(head) != 8:
                raise CorruptCheckpointError(f"{path} is truncated (storage {key})", path=path)
            n = int.from_bytes(head, "little", signed=True)
            if n != base.numel():
                raise CorruptCheckpointError(f"{path} is corrupt: storage {key} size {n}, "
                                             f"expected {base.numel()}", path=path)
            raw = base.view(torch.uint8) if base.numel() else base
            nbytes = base.numel() * base.element_size()
            if nbytes and fh.readinto(memoryview(raw.numpy()).cast("B")) != nbytes:
                raise CorruptCheckpointError(f"{path} is truncated (storage {key})", path=path)
        return obj


def _to_device(obj: Any, device: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, OrderedDict):
        out = OrderedDict((k, _to_device(v, device)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata    # type: ignore[attr-defined]
        return out
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    return obj


def safe_torch_load(path: str, map_location: Any = "cpu", *, verify: bool = True) -> Tuple[Any, FileReport]:
    """Scan, then read ``path`` with the restricted unpickler; return (object, FileReport).

    Tensors are loaded on the CPU and moved to ``map_location`` if it is another device.
    """
    path = os.fspath(path)
    report = inspect_file(path, verify=verify)
    try:
        obj = _read_zip(path) if report.format == "zip" else _read_legacy(path)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "refused" in msg:
            raise UnsafeCheckpointError(f"refused to load {path}: {msg}; nothing in the file was "
                                        "executed", path=path) from None
        raise CorruptCheckpointError(f"{path} is corrupt: {msg}", path=path) from None
    except (RuntimeError, EOFError, ValueError, KeyError, AssertionError, zipfile.BadZipFile,
            OSError, TypeError, AttributeError, IndexError) as e:
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {type(e).__name__}: {e}",
                                     path=path) from None
    if map_location not in (None, "cpu") and str(map_location) != "cpu":
        obj = _to_device(obj, map_location)
    return obj, report

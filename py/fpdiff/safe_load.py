"""Loading ``torch.save`` files without ever running a full unpickler.

A checkpoint is a pickle, and a pickle can name any importable callable (``os.system``) and call it.
fpdiff therefore loads a user's file in two steps:

1. **Scan** the pickle opcodes (``pickletools.genops`` reads them, executes nothing) and collect
   every global the file references; refuse the file, naming the offenders, if any is outside the
   allow-list. TorchScript archives, unreadable zips and files that are not ``torch.save`` output
   are refused here too, with their own error.
2. **Load** with a restricted unpickler whose ``find_class`` resolves only the allow-list — torch's
   own ``weights_only`` loader where it can be extended (torch ≥ 2.4 has
   ``torch.serialization.add_safe_globals``), else (torch 1.13 … 2.3) ``torch.load`` with a
   ``pickle_module`` whose unpickler has a strict ``find_class``.

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
    for fname in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
                  "_rebuild_parameter_with_state"):
        fn = getattr(torch._utils, fname, None)
        if fn is not None:
            rc[f"torch._utils.{fname}"] = fn
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

class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allow-list (torch < 2.4 path)."""

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        obj = _allowed_globals().get(key)
        if obj is None:
            raise UnsafeCheckpointError(
                f"refused global {key}: not allowed in a checkpoint; nothing was executed",
                globals=[key])
        return obj


class _RestrictedPickleModule:
    """Stands in for the ``pickle`` module in ``torch.load(pickle_module=...)``."""
    Unpickler = RestrictedUnpickler
    __name__ = "fpdiff.safe_load.restricted_pickle"

    @staticmethod
    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()


def _has_safe_globals_api() -> bool:
    return hasattr(torch.serialization, "add_safe_globals")


def _torch_safe_globals() -> list:
    """What torch ≥ 2.4's weights-only loader must additionally accept for Score SDE files."""
    core = getattr(np, "_core", None) if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else None
    ma = core.multiarray if core is not None else np.core.multiarray
    extra: list = [ma.scalar, np.dtype, *_numpy_dtype_classes().values()]
    if getattr(ma.scalar, "__module__", "") != "numpy.core.multiarray":
        extra.append((ma.scalar, "numpy.core.multiarray.scalar"))   # numpy ≥ 2 spelling differs
    return extra


def _torch_load_restricted(path: str, map_location: Any) -> Any:
    # The one place where torch versions differ.
    if _has_safe_globals_api():                                    # torch >= 2.4
        extra = _torch_safe_globals()
        ctx = getattr(torch.serialization, "safe_globals", None)   # torch >= 2.5: scoped
        if ctx is not None:
            with ctx(extra):
                return torch.load(path, map_location=map_location, weights_only=True)
        torch.serialization.add_safe_globals(extra)
        return torch.load(path, map_location=map_location, weights_only=True)
    # torch 1.13 … 2.3: torch's weights-only unpickler cannot be extended (and refuses NumPy
    # scalars), so hand torch.load our own restricted unpickler
    return torch.load(path, map_location=map_location, pickle_module=_RestrictedPickleModule)


def safe_torch_load(path: str, map_location: Any = "cpu", *, verify: bool = True) -> Tuple[Any, FileReport]:
    """Scan, then load ``path`` with the restricted unpickler; return (object, FileReport)."""
    report = inspect_file(path, verify=verify)
    try:
        obj = _torch_load_restricted(os.fspath(path), map_location)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Unsupported" in msg or "global" in msg.lower() or "refused" in msg:
            raise UnsafeCheckpointError(f"refused to load {path}: {msg}", path=path) from None
        raise CorruptCheckpointError(f"{path} is corrupt: {msg}", path=path) from None
    except (RuntimeError, EOFError, ValueError, KeyError, AssertionError, zipfile.BadZipFile,
            OSError, TypeError, AttributeError, IndexError) as e:
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {type(e).__name__}: {e}",
                                     path=path) from None
    return obj, report

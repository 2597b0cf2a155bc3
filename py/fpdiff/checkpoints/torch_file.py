"""Reading ``torch.save`` files (zip, torch ≥ 1.6, and the legacy format) without ``torch.load``.

Two steps: (1) **scan** every pickle's opcodes for the globals it names (``pickletools`` executes
nothing) and refuse the file, naming all offenders, if one is off the allow-list; (2) **load** with
:class:`fpdiff.safe_pickle.SafeUnpickler`. fpdiff reads the formats itself so the code path is the
same on torch 1.13 and 2.x (1.13's ``torch.load`` silently swaps a custom ``pickle_module`` for
``pickle`` unless ``weights_only=True``, and its weights-only loader cannot read NumPy scalars).

Sizes are checked before anything is allocated. A zip checkpoint is read in two passes over its
small ``data.pkl``: the first records, for every storage record, the bytes its tensors need (a
tensor that reaches past its storage is refused); the second builds the tensors from records read
only up to that need. A record must declare exactly the bytes its storage has, and a compressed
one may not inflate more than :data:`MAX_INFLATION` times (``torch.save`` never compresses), so
a small file cannot make the reader allocate gigabytes. Legacy storages must fit in the file.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import torch

from ..safe_pickle import (ALLOWED, SafeUnpickler, StorageKind, UnsafePickleError,
                           scan_pickle_globals)
from .errors import CorruptCheckpointError, NotACheckpointError, UnsafeCheckpointError
from .source import open_regular, sniff

__all__ = ["FileReport", "inspect_file", "safe_torch_load", "read_zip", "read_legacy",
           "MAX_INFLATION", "MAX_PICKLE_BYTES"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: a compressed zip record may inflate at most this many times (+1 MiB); torch.save stores
MAX_INFLATION = 32
#: the pickle of a checkpoint holds names and small values only (Score SDE's: ~100 kB)
MAX_PICKLE_BYTES = 256 << 20


@dataclass
class FileReport:
    path: str
    format: str                        # 'zip' | 'legacy' | 'safetensors' | 'msgpack'
    bytes: int
    globals: List[str] = field(default_factory=list)
    records: int = 0


def _refuse_unsafe(names: List[str], path: Optional[str], where: str) -> None:
    bad = [n for n in dict.fromkeys(names) if n not in ALLOWED]
    if bad:
        listed = ", ".join(bad[:8]) + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else "")
        raise UnsafeCheckpointError(
            f"refused to load {path or 'the file'}: its {where} references {listed}, which is not "
            "allowed in a checkpoint (only tensors, plain Python values and NumPy numeric values "
            "are); nothing in the file was executed", path=path, globals=bad)


def _scan(data: Any, path: str, where: str) -> List[str]:
    try:
        found, _ = scan_pickle_globals(data, source=f"{path} ({where})")
    except pickle.UnpicklingError as e:
        raise CorruptCheckpointError(f"{path} is corrupt: {e}", path=path) from None
    _refuse_unsafe(found, path, where)
    return found


# ----------------------------------------------------------------------------------------------
# zip records

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


def _check_inflation(info: zipfile.ZipInfo, path: str) -> None:
    """A record may not claim to inflate far beyond what it occupies in the file."""
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise CorruptCheckpointError(
                f"{path} is corrupt: stored record {info.filename} declares {info.file_size} bytes "
                f"but occupies {info.compress_size}", path=path)
        return
    if info.file_size > MAX_INFLATION * info.compress_size + (1 << 20):
        raise UnsafeCheckpointError(
            f"refused {path}: record {info.filename} would inflate {info.compress_size:,} bytes to "
            f"{info.file_size:,} (torch.save never compresses; a decompression bomb?)",
            path=path, globals=[])


def _read_record(zf: zipfile.ZipFile, info: zipfile.ZipInfo, nbytes: int, path: str) -> bytearray:
    """The first ``nbytes`` of a record (zipfile never inflates past the declared size)."""
    buf = bytearray(nbytes)
    if nbytes:
        view = memoryview(buf)
        got = 0
        with zf.open(info) as fh:
            while got < nbytes:
                n = fh.readinto(view[got:])
                if not n:
                    break
                got += n
        if got != nbytes:
            raise CorruptCheckpointError(f"{path} is truncated: record {info.filename}", path=path)
    return buf


def _open_zip(fh: BinaryIO, path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CorruptCheckpointError(
            f"{path} is truncated or corrupt: it starts like a torch.save zip but its zip "
            f"directory cannot be read ({e})", path=path) from None


def _main_pickle_bytes(zf: zipfile.ZipFile, main: str, path: str) -> bytes:
    info = zf.getinfo(main)
    _check_inflation(info, path)
    if info.file_size > MAX_PICKLE_BYTES:
        raise CorruptCheckpointError(f"{path}: {main} declares {info.file_size:,} bytes, more than "
                                     "a checkpoint's pickle holds", path=path)
    try:
        return bytes(_read_record(zf, info, info.file_size, path))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CorruptCheckpointError(f"{path} is corrupt: cannot read {main} ({e})", path=path) from None


# ----------------------------------------------------------------------------------------------
# tensors: validated geometry, two passes

def _need(size: Any, stride: Any, offset: Any, what: str) -> int:
    """Elements a strided view reaches: offset + Σ (size−1)·stride + 1 (0 for an empty view)."""
    if not isinstance(size, (tuple, list, torch.Size)) or not isinstance(stride, (tuple, list)) or \
            len(size) != len(stride) or len(size) > 32 or type(offset) is not int or offset < 0 or \
            not all(type(s) is int and s >= 0 for s in size) or \
            not all(type(s) is int and s >= 0 for s in stride):
        raise pickle.UnpicklingError(f"{what}: malformed tensor geometry (size {size!r}, stride "
                                     f"{stride!r}, offset {offset!r})")
    if any(s == 0 for s in size):
        return 0
    return offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1


@dataclass
class _Planned:
    """Pass 1 stand-in for a storage: its record key, element type and declared length."""
    key: str
    kind: StorageKind
    numel: int


class _TensorFactory:
    """The ``torch._utils._rebuild_*`` functions, in a planning and a building pass."""

    def __init__(self, path: str, storages: Optional[Dict[str, torch.Tensor]] = None):
        self.path = path
        self.storages = storages               # None: planning pass
        self.need_bytes: Dict[str, int] = {}   # record key -> bytes its tensors reach

    def __call__(self, name: str, args: tuple) -> Any:
        if name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            if not args:
                raise pickle.UnpicklingError("parameter without data")
            data, requires_grad = args[0], bool(args[1]) if len(args) > 1 else True
            if self.storages is None or not torch.is_tensor(data):
                return data
            return torch.nn.Parameter(data, requires_grad=requires_grad)
        if name == "_rebuild_tensor":
            storage, offset, size, stride = (args + (None,) * 4)[:4]
            dtype, requires_grad = None, False
        elif name == "_rebuild_tensor_v2":
            storage, offset, size, stride = (args + (None,) * 4)[:4]
            requires_grad, dtype = bool(args[4]) if len(args) > 4 else False, None
        else:  # _rebuild_tensor_v3: dtype given explicitly over an untyped storage
            if len(args) < 7 or not isinstance(args[6], torch.dtype):
                raise pickle.UnpicklingError("malformed _rebuild_tensor_v3 record")
            storage, offset, size, stride = args[:4]
            requires_grad, dtype = bool(args[4]), args[6]
        if self.storages is None:
            if not isinstance(storage, _Planned):
                raise pickle.UnpicklingError("tensor data does not come from a storage record")
            dt = dtype or storage.kind.dtype
            elem = torch.empty((), dtype=dt).element_size()
            need = _need(size, stride, offset, f"tensor on storage {storage.key}") * elem
            have = storage.numel * torch.empty((), dtype=storage.kind.dtype).element_size()
            if need > have:
                raise CorruptCheckpointError(
                    f"{self.path} is corrupt: a tensor on storage {storage.key} needs {need} bytes "
                    f"but the storage holds {have}", path=self.path)
            self.need_bytes[storage.key] = max(self.need_bytes.get(storage.key, 0), need)
            return storage
        if not torch.is_tensor(storage):
            raise pickle.UnpicklingError("tensor data does not come from a storage record")
        flat = storage if dtype is None or storage.dtype == dtype else storage.view(torch.uint8).view(dtype)
        if _need(size, stride, offset, "tensor") > flat.numel():
            raise CorruptCheckpointError(f"{self.path} is corrupt: a tensor reaches past the end of "
                                         "its storage", path=self.path)
        t = flat.as_strided(tuple(size), tuple(stride), int(offset))
        if requires_grad and t.is_floating_point():
            t.requires_grad_(True)
        return t


def _unpickle(data: bytes, factory: _TensorFactory, loader: Callable[..., Any]) -> Any:
    return SafeUnpickler(io.BytesIO(data), size=len(data), tensor_builder=factory,
                         storage_loader=loader).load()


def _check_byteorder(order: Optional[bytes], path: str) -> None:
    if order is not None and order.decode("ascii", "replace").strip() != sys.byteorder:
        raise CorruptCheckpointError(f"{path} was written on a {order!r}-endian machine; "
                                     "byte swapping is not supported", path=path)


def read_zip(fh: BinaryIO, path: str) -> Any:
    """The object a torch.save zip holds, its storages read only as far as its tensors reach."""
    zf = _open_zip(fh, path)
    with zf:
        main = _zip_main_pickle(zf, path)
        prefix = main[: -len("data.pkl")]
        infos = {i.filename: i for i in zf.infolist()}
        if prefix + "byteorder" in infos:
            _check_byteorder(bytes(_read_record(zf, infos[prefix + "byteorder"],
                                                min(infos[prefix + "byteorder"].file_size, 16), path)),
                             path)
        data = _main_pickle_bytes(zf, main, path)
        declared: Dict[str, _Planned] = {}

        def plan(kind: StorageKind, key: Any, location: Any, numel: Any, *rest: Any) -> _Planned:
            key = key.decode("ascii") if isinstance(key, bytes) else str(key)
            if type(numel) is not int or numel < 0:
                raise pickle.UnpicklingError(f"storage {key}: bad length {numel!r}")
            prev = declared.get(key)
            if prev is not None and prev.numel * _elem(prev.kind) != numel * _elem(kind):
                raise CorruptCheckpointError(f"{path} is corrupt: storage {key} is declared twice "
                                             "with different sizes", path=path)
            declared[key] = prev or _Planned(key, kind, numel)
            return declared[key]

        planner = _TensorFactory(path)
        _unpickle(data, planner, plan)

        storages: Dict[str, torch.Tensor] = {}
        for key, p in declared.items():
            rec = f"{prefix}data/{key}"
            info = infos.get(rec)
            if info is None:
                raise CorruptCheckpointError(f"{path} is corrupt: storage record {rec} is missing",
                                             path=path)
            elem = _elem(p.kind)
            if info.file_size != p.numel * elem:
                raise CorruptCheckpointError(
                    f"{path} is corrupt: record {rec} holds {info.file_size} bytes, expected "
                    f"{p.numel} x {elem}", path=path)
            _check_inflation(info, path)
            need = planner.need_bytes.get(key, 0)
            need = -(-need // elem) * elem              # whole elements of the storage's type
            buf = _read_record(zf, info, need, path)
            flat = torch.frombuffer(buf, dtype=torch.uint8) if need else torch.empty(0, dtype=torch.uint8)
            storages[key] = flat.view(p.kind.dtype) if need else torch.empty(0, dtype=p.kind.dtype)

        def load(kind: StorageKind, key: Any, *rest: Any) -> torch.Tensor:
            key = key.decode("ascii") if isinstance(key, bytes) else str(key)
            t = storages[key]
            return t if t.dtype == kind.dtype else t.view(torch.uint8).view(kind.dtype)

        return _unpickle(data, _TensorFactory(path, storages), load)


def _elem(kind: StorageKind) -> int:
    return torch.empty((), dtype=kind.dtype).element_size()


# ----------------------------------------------------------------------------------------------
# legacy format: magic, protocol, sys info, the object, storage keys, then raw storages

def read_legacy(fh: BinaryIO, path: str) -> Any:
    size = os.fstat(fh.fileno()).st_size

    def plain() -> Any:
        return SafeUnpickler(fh, size=size).load()

    if plain() != _LEGACY_MAGIC:
        raise NotACheckpointError(f"{path} is a pickle but not a torch.save checkpoint", path=path)
    if plain() != 1001:
        raise NotACheckpointError(f"{path}: unsupported legacy protocol version", path=path)
    sys_info = plain()
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        _check_byteorder(b"big", path)
    roots: Dict[str, torch.Tensor] = {}
    views: Dict[str, torch.Tensor] = {}

    def load_storage(kind: StorageKind, root_key: Any, location: Any, numel: Any,
                     view: Any = None) -> torch.Tensor:
        root_key = str(root_key)
        if root_key not in roots:
            if type(numel) is not int or numel < 0 or numel * _elem(kind) > size:
                raise CorruptCheckpointError(f"{path} is corrupt: storage {root_key} declares "
                                             f"{numel!r} elements, more than the file holds",
                                             path=path)
            roots[root_key] = torch.empty(numel, dtype=kind.dtype)
        base = roots[root_key]
        if view is None:
            return base
        view_key, offset, vsize = view
        if str(view_key) not in views:
            if not (type(offset) is int and type(vsize) is int and 0 <= offset and
                    offset + vsize <= base.numel() and vsize >= 0):
                raise CorruptCheckpointError(f"{path} is corrupt: view {view_key} lies outside "
                                             f"storage {root_key}", path=path)
            views[str(view_key)] = base[offset: offset + vsize]
        return views[str(view_key)]

    obj = SafeUnpickler(fh, size=size, tensor_builder=_TensorFactory(path, {}),
                        storage_loader=load_storage).load()
    keys = plain()
    if not isinstance(keys, list):
        raise CorruptCheckpointError(f"{path} is corrupt: no storage key list", path=path)
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
        nbytes = base.numel() * base.element_size()
        if nbytes and fh.readinto(memoryview(base.view(torch.uint8).numpy()).cast("B")) != nbytes:
            raise CorruptCheckpointError(f"{path} is truncated (storage {key})", path=path)
    return obj


# ----------------------------------------------------------------------------------------------
# the whole file: classify, scan, load

def inspect_file(path: str, *, verify: bool = True) -> FileReport:
    """Classify a torch.save file and scan every pickle in it; raise the specific error if unusable.

    ``verify`` also checks every zip record's CRC (reads the whole file once, after the size checks).
    """
    with open_regular(path) as fh:
        return _inspect_open(fh, path, verify)


def _inspect_open(fh: BinaryIO, path: str, verify: bool) -> FileReport:
    size = os.fstat(fh.fileno()).st_size
    if size == 0:
        raise NotACheckpointError(f"{path} is empty", path=path)
    head = fh.read(16)
    fh.seek(0)
    kind = sniff(head)
    if kind == "zip":
        zf = _open_zip(fh, path)
        with zf:
            main = _zip_main_pickle(zf, path)
            data = _main_pickle_bytes(zf, main, path)
            found = _scan(data, path, "pickle")
            for info in zf.infolist():
                _check_inflation(info, path)
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
    if kind == "legacy":
        found_all: List[str] = []
        for i in range(5):
            found_all += _scan(fh, path, f"pickle #{i + 1}")
        return FileReport(path, "legacy", size, sorted(set(found_all)))
    raise NotACheckpointError(
        f"{path} is not a PyTorch checkpoint (unrecognised header {head[:4]!r}; expected a "
        "torch.save zip archive or legacy pickle)", path=path)


def safe_torch_load(path: str, map_location: Any = "cpu", *,
                    verify: bool = True) -> Tuple[Any, FileReport]:
    """Scan, then read ``path`` with the safe unpickler; return (object, FileReport).

    Tensors are built on the CPU and moved to ``map_location`` if it is another device.
    """
    path = os.fspath(path)
    with open_regular(path) as fh:
        report = _inspect_open(fh, path, verify)
        fh.seek(0)
        try:
            obj = read_zip(fh, path) if report.format == "zip" else read_legacy(fh, path)
        except (CorruptCheckpointError, NotACheckpointError, UnsafeCheckpointError):
            raise
        except UnsafePickleError as e:
            raise UnsafeCheckpointError(f"refused to load {path}: {e}; nothing in the file was "
                                        "executed", path=path, globals=e.globals) from None
        except pickle.UnpicklingError as e:
            raise CorruptCheckpointError(f"{path} is corrupt: {e}", path=path) from None
        except (RuntimeError, EOFError, ValueError, KeyError, AssertionError, zipfile.BadZipFile,
                OSError, TypeError, AttributeError, IndexError, OverflowError, MemoryError) as e:
            raise CorruptCheckpointError(f"{path} is truncated or corrupt: {type(e).__name__}: {e}",
                                         path=path) from None
    if map_location not in (None, "cpu") and str(map_location) != "cpu":
        obj = _to_device(obj, map_location)
    return obj, report


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

"""TensorBoard event files, as the originals write them under ``<workdir>/tensorboard``, with
tensorboardX (no TensorFlow, no tensorboard server; installs over torch 1.13 and 2.x alike).

:class:`Board` writes scalars and images on rank 0 (other ranks get a no-op board);
:func:`read_events` reads the files back (TFRecord framing with masked CRC-32C, ``Event`` protos)
so tests and scripts can check what a run logged without TensorBoard.
"""

from __future__ import annotations

import glob
import os
import struct
from typing import Any, Optional

import numpy as np


class Board:
    """Scalars and images for one run directory; silently off when ``enabled`` is False."""

    def __init__(self, logdir: Optional[str], enabled: bool = True):
        self.logdir = logdir
        self._writer = None
        self.error: Optional[str] = None
        if enabled and logdir:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as exc:  # set-up installs it; say so instead of failing the run
                self.error = f"tensorboardX is not installed ({exc}); no TensorBoard files are written"
                return
            self._writer = SummaryWriter(logdir=logdir, flush_secs=30)

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        if self._writer is None:
            return
        for k, v in values.items():
            if v is not None and np.isfinite(v):
                self._writer.add_scalar(f"{prefix}{k}", float(v), int(step))

    def image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        if self._writer is not None:
            self._writer.add_image(tag, image_hwc, int(step), dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _records(path: str):
    from tensorboardX.record_writer import masked_crc32c

    with open(path, "rb") as fh:
        data = fh.read()
    i = 0
    while i + 12 <= len(data):
        header = data[i:i + 8]
        (n,) = struct.unpack("<Q", header)
        (crc_len,) = struct.unpack("<I", data[i + 8:i + 12])
        if crc_len != masked_crc32c(header):
            raise ValueError(f"{path}: corrupt record length at byte {i}")
        body = data[i + 12:i + 12 + n]
        (crc_body,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        if crc_body != masked_crc32c(body):
            raise ValueError(f"{path}: corrupt record at byte {i}")
        yield body
        i += 16 + n


def read_events(logdir: str) -> list[dict[str, Any]]:
    """Every scalar and image summary under ``logdir``: ``{tag, step, value}`` or ``{tag, step,
    image: (height, width, png_bytes)}``, in file order."""
    from tensorboardX.proto import event_pb2

    out: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True)):
        for body in _records(path):
            ev = event_pb2.Event()
            ev.ParseFromString(body)
            if not ev.HasField("summary"):
                continue
            for v in ev.summary.value:
                if v.HasField("simple_value"):
                    out.append({"tag": v.tag, "step": int(ev.step), "value": float(v.simple_value)})
                elif v.HasField("image"):
                    out.append({"tag": v.tag, "step": int(ev.step),
                                "image": (int(v.image.height), int(v.image.width), bytes(v.image.encoded_image_string))})
    return out

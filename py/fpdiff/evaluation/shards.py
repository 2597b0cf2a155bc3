"""Resumable work over a data set or a number of samples, split plainly across the ranks of a job.

The work is a list of *units* (a batch of rows, for one repeat), numbered once for all. Unit i's
randomness comes from (seed, i) alone, so its result does not depend on how many ranks computed
it, in which round, or whether the job was interrupted before it. Rank 0 owns the output
directory:

    <out>/manifest.json   the settings; a re-run with other settings is refused (naming them)
    <out>/units.jsonl     one line per finished unit (appended and flushed as units finish)
    <out>/units/<i>.npz   arrays of unit i, when the work produces arrays (features, samples)

Rounds: rank r takes the r-th unfinished unit of the round; rank 0 gathers the records (and a
stop flag) on the control group and appends them, then says whether to go on. Ctrl-C / cancel
therefore loses at most the units of the current round, and a re-run continues from the log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch.distributed as tdist

from .. import distributed as D
from ..files import atomic_path


class ShardsStopped(Exception):
    """The work stopped on request after the current round; the log holds every finished unit."""


class SettingsMismatch(ValueError):
    """``out`` holds results made with other settings."""


@dataclass(frozen=True)
class Unit:
    index: int
    lo: int  # rows [lo, hi) of the data (or of the samples)
    hi: int
    repeat: int = 0


def make_units(n_rows: int, batch: int, repeats: int = 1) -> list[Unit]:
    """Batches of ``batch`` rows (the last one shorter), for each repeat; numbered repeat-major."""
    out = []
    for r in range(int(repeats)):
        for lo in range(0, int(n_rows), int(batch)):
            out.append(Unit(len(out), lo, min(int(n_rows), lo + int(batch)), r))
    return out


class WorkDir:
    """The output directory of one piece of work (see the module docstring)."""

    def __init__(self, path: str, settings: dict, *, main: bool = True):
        self.path = os.path.abspath(path)
        self.main = main
        self.settings = json.loads(json.dumps(settings))  # plain JSON, as it will be read back
        self.log = os.path.join(self.path, "units.jsonl")
        if not main:
            return
        os.makedirs(self.path, exist_ok=True)
        manifest = os.path.join(self.path, "manifest.json")
        if os.path.isfile(manifest):
            with open(manifest) as fh:
                old = json.load(fh)
            diff = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            if diff:
                shown = ", ".join(f"{k}: {old.get(k)!r} → {self.settings.get(k)!r}" for k in diff[:6])
                raise SettingsMismatch(f"{self.path} holds results made with other settings ({shown}); "
                                       "use another output directory, or remove it to start over")
        else:
            with atomic_path(manifest) as tmp, open(tmp, "w") as fh:
                json.dump(self.settings, fh, indent=1, sort_keys=True)
        self._drop_torn_line()

    def _drop_torn_line(self) -> None:
        """A kill in the middle of an append leaves a line without its newline: cut it off, so the
        next record starts on a line of its own (that unit is simply computed again)."""
        if not os.path.isfile(self.log):
            return
        with open(self.log, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def finished(self) -> dict[int, dict]:
        """Records of the finished units; a torn last line (a kill mid-write) is ignored."""
        out: dict[int, dict] = {}
        if not os.path.isfile(self.log):
            return out
        with open(self.log) as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                out[int(rec["unit"])] = rec
        return out

    def arrays_path(self, index: int) -> str:
        return os.path.join(self.path, "units", f"{index:06d}.npz")

    def load_arrays(self, index: int) -> dict[str, np.ndarray]:
        with np.load(self.arrays_path(index)) as z:
            return {k: z[k] for k in z.files}

    def record(self, rec: dict, arrays: Optional[dict] = None) -> None:
        if arrays:
            with atomic_path(self.arrays_path(rec["unit"]), suffix=".tmp.npz") as tmp:
                np.savez(tmp, **arrays)
        with open(self.log, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


Compute = Callable[[Unit], tuple[dict, Optional[dict]]]


def run_units(units: list[Unit], compute: Compute, wd: WorkDir, d: Optional[D.Dist], *,
              should_stop: Callable[[], bool] = lambda: False,
              on_records: Callable[[list[dict]], None] = lambda recs: None) -> dict[int, dict]:
    """Compute every unfinished unit (``compute(unit) -> (record, arrays | None)``), rank r taking
    the r-th of each round; returns all records by unit. Raises :class:`ShardsStopped` when a
    stop was asked (after recording the round)."""
    world, rank = (d.world, d.rank) if d is not None else (1, 0)
    done = set(wd.finished()) if wd.main else set()
    if d is not None:
        done = set(d.broadcast_object(sorted(done) if d.is_main else None))
    todo = [u for u in units if u.index not in done]
    for start in range(0, len(todo), world):
        mine = todo[start + rank] if start + rank < len(todo) else None
        out = None
        if mine is not None:
            rec, arrays = compute(mine)
            out = ({"unit": mine.index, "repeat": mine.repeat, "lo": mine.lo, "hi": mine.hi, **rec}, arrays)
        stop = bool(should_stop())
        if d is None:
            gathered = [(out, stop)]
        else:
            gathered = [None] * world if d.is_main else None
            tdist.gather_object((out, stop), gathered, dst=0, group=d.control)
        records = []
        if wd.main:
            for item in gathered:
                got, _ = item
                if got is not None:
                    wd.record(*got)
                    records.append(got[0])
            on_records(records)
        stop_any = any(s for _, s in gathered) if wd.main else False
        if d is not None:
            stop_any = d.control_sum([1.0 if (stop_any or stop) else 0.0])[0] > 0
        if stop_any:
            raise ShardsStopped(f"stopped after {start + min(world, len(todo) - start)} of {len(todo)} units")
    return wd.finished() if wd.main else {}

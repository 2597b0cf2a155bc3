"""One training job for bench/scale/ddp_cpu.py: every rank (or the single process) trains k steps
and rank 0 writes the per-step wall-clock times, the losses and the final parameters."""

from __future__ import annotations

import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "py"))

from fpdiff import config as C  # noqa: E402
from fpdiff import distributed as D  # noqa: E402
from fpdiff import train as T  # noqa: E402


def main() -> int:
    spec = json.load(open(sys.argv[1]))
    d = D.init_from_env()
    # the machine's cores shared evenly: one process uses them all, each of W ranks a W-th
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // (d.world if d else 1)))
    exp = C.experiment_from_wire(spec["experiment"])
    stamps: list[tuple[int, float, float]] = []

    def on_event(e: dict) -> None:
        if e["type"] == "metrics":
            stamps.append((e["step"], time.perf_counter(), e["loss"]))

    state, res = T.train(exp, spec["workdir"], device="cpu", callback=on_event, dist=d, event_interval=1e9)
    if d is None or d.is_main:
        torch.save([p.detach() for p in state.network.parameters()], spec["out"] + ".params.pt")
        with open(spec["out"] + ".json", "w") as fh:
            json.dump({"stamps": stamps, "world": d.world if d else 1, "threads": torch.get_num_threads()}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

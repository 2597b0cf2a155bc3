"""Bridge overhead on the Python side: the same toy training run directly (``fpdiff.train.train``,
no events) and as ``train.run`` in a real worker process over its ZeroMQ socket (events on, a
Python DEALER client standing in for the TypeScript bridge), alternated ``--repeats`` times.

    python bench/engine/worker_vs_direct.py --loss dsm --batch 1000 --steps 200 --repeats 3

Ratio = median worker seconds / median direct seconds, for the op's own loop seconds (what
``train.run`` returns), for process CPU time, and for the client's wall time of the request (spawned worker already
warm; the direct wall time includes building the model, as the op's does). The TypeScript
end-to-end figure (bench/bridge.ts, the lead's) adds node's side; this isolates the worker's.
Writes bench/results/engine.worker_vs_direct.<device>.json.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

import common  # noqa: F401
import torch

from fpdiff import config as C
from fpdiff import train as T

sys.path.insert(0, os.path.join(common.ROOT, "py", "tests"))
from _worker_client import WorkerClient  # noqa: E402


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = common.arguments(__doc__)
    ap.add_argument("--loss", default="dsm", choices=sorted(common.LOSSES))
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--log-freq", type=int, default=10, help="metrics event every N steps")
    ap.add_argument("--interval", type=float, default=1.0, help="eventIntervalSeconds")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ns, threads, before = common.start(ap)
    wire = common.toy_experiment(ns.loss, batch=ns.batch, n_iters=ns.steps, log_freq=ns.log_freq)
    exp = C.experiment_from_wire(wire)
    worker = WorkerClient(threads=threads)
    rows = []
    try:
        for i in range(ns.repeats):
            for mode in ("direct", "worker") if i % 2 == 0 else ("worker", "direct"):
                workdir = tempfile.mkdtemp(prefix="fpd-bench-")
                try:
                    t0 = time.perf_counter()
                    if mode == "direct":
                        c0 = time.process_time()
                        _, res = T.train(exp, workdir, device=ns.device)
                        cpu = time.process_time() - c0
                        loop, events = res.seconds, 0
                    else:
                        seen = []
                        c0 = proc_cpu_seconds(worker.proc.pid)
                        out = worker.call("train.run", {"experiment": wire, "workdir": workdir, "device": ns.device,
                                                        "eventIntervalSeconds": ns.interval}, seen.append, timeout=3600)
                        cpu = proc_cpu_seconds(worker.proc.pid) - c0
                        loop, events = out["seconds"], len(seen)
                    wall = time.perf_counter() - t0
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                rows.append({"mode": mode, "repeat": i, "loopSeconds": loop, "wallSeconds": wall, "cpuSeconds": cpu,
                             "events": events})
                print(f"{mode:6s} #{i}: loop {loop:.3f} s  wall {wall:.3f} s  cpu {cpu:.3f} s  events {events}  "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        worker.close()
    med = {m: {k: statistics.median(r[k] for r in rows if r["mode"] == m) for k in ("loopSeconds", "wallSeconds", "cpuSeconds")}
           for m in ("direct", "worker")}
    ratio = {k: med["worker"][f"{k}Seconds"] / med["direct"][f"{k}Seconds"] for k in ("loop", "wall", "cpu")}
    doc = common.record("engine.worker_vs_direct", before, ns.device, threads, ompWaitPolicy=os.environ.get("OMP_WAIT_POLICY"),
                        experiment=wire, eventIntervalSeconds=ns.interval, rows=rows, median=med,
                        ratioLoop=ratio["loop"], ratioWall=ratio["wall"], ratioCpu=ratio["cpu"],
                        note="cpu = process CPU time (all threads; the worker's includes its idle I/O thread's polling): "
                             "less sensitive than wall time to other load on a shared machine")
    print(f"ratio (loop) {doc['ratioLoop']:.4f}   ratio (wall) {doc['ratioWall']:.4f}   ratio (cpu) {doc['ratioCpu']:.4f}")
    common.save(ns, f"engine.worker_vs_direct.{torch.device(ns.device).type}", doc)


if __name__ == "__main__":
    main()

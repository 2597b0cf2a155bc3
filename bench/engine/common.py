"""Shared by the engine benchmarks: their common options, the machine record, thread set-up, the
result document and file, the toy experiments."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "py"))

import torch  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results")

# The toy losses of configs/toy.ts (high-order paper's toy.py weights; FP-Diffusion defaults).
DSM = {"kind": "dsm", "weighting": "conventional", "reduce": "mean", "eps": 1e-5}


def high_order(order: int) -> dict:
    return {"kind": "highOrder", "order": order, "parts": ["frobenius"], "lambdas": {"second": 0.5, "third": 0.1},
            "estimator": "exact"}


FPE = {"kind": "scoreFpe", "mode": "vector", "alpha": 0.15, "beta": 0.01, "m": 2, "weighting": "convention",
       "points": "pert", "dt": "autodiff", "div": "exact"}
# FP-Diffusion's 'both' / g² / m = 2 term with dimension-free weights (shares of the loss at the
# start, docs/score-fpe-scale.md §5): its CIFAR-10 regime (the toy presets), and the shares that
# lowered both toys' NLL in ablations/results/fpe_alpha
FPE_CIFAR_REGIME = {**FPE, "mode": "both", "weighting": "ll", "calibrate": {"vectorShare": 2e-6, "scalarShare": 2e-3}}
FPE_SHARES = {**FPE, "mode": "both", "weighting": "ll", "calibrate": {"vectorShare": 1e-2, "scalarShare": 2e-2}}
LOSSES = {"dsm": [DSM], "order2": [DSM, high_order(2)], "order3": [DSM, high_order(3)], "dsm_fpe": [DSM, FPE],
          "dsm_fpe_cifar": [DSM, FPE_CIFAR_REGIME], "dsm_fpe_shares": [DSM, FPE_SHARES]}


_RESOLVE = """
import { experiment } from "%s";
let input = "";
for await (const chunk of process.stdin) input += chunk;
process.stdout.write(JSON.stringify(experiment(JSON.parse(input))));
"""


@lru_cache(maxsize=64)
def _resolve(text: str) -> str:
    dist = Path(ROOT) / "dist" / "src" / "dsl" / "index.js"
    if shutil.which("node") is None or not dist.exists():
        raise SystemExit("the benchmarks resolve experiments with the TypeScript DSL (the worker takes only resolved "
                         f"experiments): needs `node` and {dist} (npm run setup)")
    out = subprocess.run(["node", "--input-type=module", "-e", _RESOLVE % dist.as_uri()], input=text,
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"the DSL refuses the benchmark's experiment: {out.stderr.strip()[-800:]}")
    return out.stdout


def resolve(raw: dict) -> dict:
    """``raw`` as the DSL's `experiment()` resolves it (defaults, cross-field rules): the wire form."""
    return json.loads(_resolve(json.dumps(raw, sort_keys=True)))


def toy_experiment(loss: str, *, batch: int = 5000, n_iters: int = 100, dataset: str = "checkerboard",
                   sde: str = "ve", seed: int = 0, log_freq: int = 100, snapshot_freq: int = 10**9,
                   cuda_graph: bool = False) -> dict:
    """configs/toy.ts's preset (resolved wire form): MLP of the high-order paper, Adam 1e-3, no warm-up, clip 1."""
    return resolve({
        "name": f"toy/{dataset}_{sde}_{loss}",
        "sde": {"kind": "ve", "sigmaMin": 0.01, "sigmaMax": 50} if sde == "ve" else {"kind": "vp", "betaMin": 0.1, "betaMax": 20},
        "model": {"kind": "mlp", "embedDim": 64, "timeHidden": [128, 128], "xHidden": [128, 128], "width": 128,
                  "hidden": [512, 512], "emaRate": 0.999, "param": "eps"},
        "data": {"kind": "toy", "dataset": dataset},
        "loss": {"terms": LOSSES[loss]},
        "optim": {"kind": "adam", "lr": 1e-3, "warmup": 0, "gradClip": 1},
        "training": {"batchSize": batch, "nIters": n_iters, "logFreq": log_freq, "evalFreq": 10**9,
                     "snapshotFreq": snapshot_freq, "snapshotFreqForPreemption": snapshot_freq, "seed": seed,
                     "cudaGraph": cuda_graph},
    })


def set_threads(n: int | None) -> int:
    """As the worker does: FPD_THREADS, else every core we may run on."""
    if not n:
        env = os.environ.get("FPD_THREADS")
        n = int(env) if env else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(int(n))
    return torch.get_num_threads()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device,
        "loadAverage": [round(x, 2) for x in os.getloadavg()],
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device))
        out["gpu"] = {"name": p.name, "memoryGiB": round(p.total_memory / 2**30, 1), "capability": f"{p.major}.{p.minor}"}
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def arguments(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser (described by its docstring's first line) with the options every one
    takes: --threads (default: as the worker), --tag (in the result file's name) and --no-write."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: as the worker)")
    ap.add_argument("--tag", default="", help="appended to the result file's name")
    ap.add_argument("--no-write", action="store_true", help="print only")
    return ap


def start(ap: argparse.ArgumentParser) -> tuple[argparse.Namespace, int, dict]:
    """The options, the threads set as the worker sets them (--threads), and the machine before the
    run (its --device, else the CPU)."""
    ns = ap.parse_args()
    threads = set_threads(ns.threads)
    return ns, threads, machine(getattr(ns, "device", "cpu"))


def case_arguments(ap: argparse.ArgumentParser, *, steps: int, warmup: int, step_help: str) -> None:
    """The options of a benchmark over (batch, loss) cases: --batch and --losses (comma-separated,
    see `over_cases`), the timed --steps of each and the --warmup steps before them."""
    ap.add_argument("--batch", default="5000", help="comma-separated batch sizes")
    ap.add_argument("--losses", default="dsm,order2,order3,dsm_fpe", help=f"comma-separated, of {', '.join(LOSSES)}")
    ap.add_argument("--steps", type=int, default=steps, help=step_help)
    ap.add_argument("--warmup", type=int, default=warmup)


def over_cases(ns: argparse.Namespace, measure: Callable[[int, str], dict], line: Callable[[dict], str]) -> list[dict]:
    """``measure(batch, loss)`` for each case of --batch × --losses (batch by batch), each row
    printed as it finishes (``line(row)`` after the case's name)."""
    rows = []
    for b in [int(x) for x in ns.batch.split(",")]:
        for loss in ns.losses.split(","):
            rows.append({"loss": loss, "batch": b, **measure(b, loss)})
            print(f"batch {b:5d} {loss:8s} {line(rows[-1])}", flush=True)
    return rows


def record(benchmark: str, before: dict, device: str, threads: int, **fields: Any) -> dict:
    """A result document: which benchmark, the machine before the run and its load after, the
    threads, then the benchmark's own fields."""
    return {"benchmark": benchmark, "machine": before, "loadAverageAfter": machine(device)["loadAverage"],
            "threads": threads, **fields}


def save(ns: argparse.Namespace, name: str, doc: dict) -> None:
    """``doc`` as bench/results/<name>[.<tag>].json (printing the path), unless --no-write."""
    if not ns.no_write:
        print(write(f"{name}{'.' + ns.tag if ns.tag else ''}.json", doc))


def write(name: str, doc: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    return path

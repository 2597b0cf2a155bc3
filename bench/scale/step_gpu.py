"""Training step time of NCSN++ (VE, CIFAR-10 config, nf 128) at batch 48 per GPU for dsm, order 2,
order 3 and dsm + score FPE (the high-order paper reports 0.28 / 0.33 / 0.44 s per step on 8
RTX 2080 Ti at global batch 48; target: order3 / dsm ≤ 1.4). Prepared for a GPU session.

    PYTHONPATH=py python bench/scale/step_gpu.py --batch 48 --steps 20 [--tf32]"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "bench", "numerics"))
sys.path.insert(0, os.path.join(ROOT, "py", "tests"))  # _resolve: experiments resolved by the TS DSL

from common import machine, write  # noqa: E402

from fpdiff import config as C  # noqa: E402
from _resolve import resolved  # noqa: E402
from fpdiff import train as T  # noqa: E402

LOSSES = {
    "dsm": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"}],
    "order2": [{"kind": "dsm", "reduce": "mean"}, {"kind": "highOrder", "order": 2}],
    "order3": [{"kind": "dsm", "reduce": "mean"}, {"kind": "highOrder", "order": 3}],
    "dsm_fpe": [{"kind": "dsm", "weighting": "likelihood"}, {"kind": "scoreFpe"}],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tf32", action="store_true")
    ns = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = ns.tf32
    out = {}
    for name, terms in LOSSES.items():
        exp = C.experiment_from_wire(resolved({"name": f"bench/{name}", "sde": {"kind": "ve"}, "model": {"kind": "ncsnpp"},
                                      "data": {"kind": "cifar10"}, "loss": {"terms": terms},
                                      "training": {"batchSize": ns.batch}}))
        state = T.build_state(exp, dev)
        x = torch.rand(ns.batch, 3, 32, 32, device=dev)
        g = torch.Generator(device=dev).manual_seed(0)
        times = []
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(ns.steps + 2):
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            T.train_step(state, x, g)
            if dev == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[name] = {"median_step_s": statistics.median(times), "min_step_s": min(times),
                     "peak_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if dev == "cuda" else None}
        print(name, out[name], flush=True)
        del state
    out["order3_over_dsm"] = out["order3"]["median_step_s"] / out["dsm"]["median_step_s"]
    print("wrote", write("scale_step_ncsnpp", {"machine": machine(dev), "batch": ns.batch, "tf32": ns.tf32, "results": out}))


if __name__ == "__main__":
    main()

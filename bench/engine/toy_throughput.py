"""Toy training throughput of the engine (fpdiff.train's step: seeded batch and draws, loss,
backward, clip, Adam, EMA) for each toy loss and batch size, without the worker.

    python bench/engine/toy_throughput.py                       # batch 5000, all losses, CPU
    python bench/engine/toy_throughput.py --batch 500,1000,2000,5000 --steps 10
    python bench/engine/toy_throughput.py --device cuda --steps 50

Writes bench/results/engine.toy_throughput.<device>[.<tag>].json with the machine.
"""

from __future__ import annotations

import os
import statistics
import time

import common  # noqa: F401  (sys.path, torch)
import torch

from fpdiff import config as C
from fpdiff import train as T
from fpdiff.data import STREAM_DROPOUT, STREAM_LOSS, make_batches, step_generator, step_seed


def measure(exp_wire: dict, device: torch.device, steps: int, warmup: int, budget: float) -> dict:
    exp = C.experiment_from_wire(exp_wire)
    state = T.build_state(exp, device)
    batches = make_batches(exp.data, exp.training.batch_size, exp.training.seed)
    gen = torch.Generator(device=device)
    times = []
    t_start = time.perf_counter()
    for k in range(warmup + steps):
        common.sync(device)
        t0 = time.perf_counter()
        x0 = batches.batch(k, device=device)
        step_generator(exp.training.seed, k, STREAM_LOSS, generator=gen)
        torch.manual_seed(step_seed(exp.training.seed, k, STREAM_DROPOUT))
        res = T.train_step(state, x0, gen)
        common.sync(device)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
        if not res.ok:
            raise RuntimeError(f"non-finite loss at step {k}")
        if k >= warmup and time.perf_counter() - t_start > budget and len(times) >= 3:
            break
    med = statistics.median(times)
    return {"steps": len(times), "medianStepSeconds": med, "meanStepSeconds": statistics.fmean(times),
            "minStepSeconds": min(times), "itPerSec": 1.0 / med, "lastLoss": float(res.result.total)}


def main() -> None:
    ap = common.arguments(__doc__)
    ap.add_argument("--device", default="cpu")
    common.case_arguments(ap, steps=10, warmup=2, step_help="timed steps per case (fewer if --budget runs out)")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per case, at most")
    ns, threads, before = common.start(ap)
    device = torch.device(ns.device)
    rows = common.over_cases(
        ns, lambda b, loss: measure(common.toy_experiment(loss, batch=b), device, ns.steps, ns.warmup, ns.budget),
        lambda r: (f"median {1000 * r['medianStepSeconds']:8.1f} ms/step (min {1000 * r['minStepSeconds']:8.1f})  "
                   f"{r['itPerSec']:7.2f} it/s  ({r['steps']} steps)"))
    doc = common.record("engine.toy_throughput", before, ns.device, threads, ompWaitPolicy=os.environ.get("OMP_WAIT_POLICY"),
                        experiment="configs/toy.ts checkerboard VE preset (MLP 64/128/512, Adam 1e-3, clip 1); "
                        "losses: dsm = ℓ₁; order2 = ℓ₁ + 0.5 ℓ₂(frobenius, exact); order3 = + 0.1 ℓ₃; dsm_fpe = ℓ₁ + score FPE "
                        "(both, ll, α 0.15, β 0.01, m 2, exact div, autodiff ∂t)", results=rows)
    common.save(ns, f"engine.toy_throughput.{device.type}", doc)


if __name__ == "__main__":
    main()

"""The CUDA-graph training step (training.cudaGraph, py/fpdiff/fast_step.py) against the plain
step, side by side in one run: updates per second of the whole step as `train.run` makes it
(seeded batch, draws, loss, backward, clip, Adam, EMA) for each toy loss, and whether both paths
make the same updates from the same start (max |Δ| of the losses and parameters after K steps).

    python bench/engine/step_graph.py --device cuda                 # batch 5000, all toy losses
    python bench/engine/step_graph.py --device cpu --backend eager --batch 500 --steps 5   # smoke test of the script

Target (issue 13): ≥ 3× the plain path's updates/s for dsm and order3 on a GPU at batch 5000.
Writes bench/results/engine.step_graph.<device>[.<tag>].json with the machine.
"""

from __future__ import annotations

import statistics
import time

import common  # noqa: F401  (sys.path, torch)
import torch

from fpdiff import config as C
from fpdiff import fast_step as F
from fpdiff import train as T
from fpdiff.data import STREAM_DROPOUT, STREAM_LOSS, make_batches, step_generator, step_seed


def _run(state, step, batches, seed: int, device: torch.device, k0: int, n: int, times: list | None, losses: list | None):
    gen = torch.Generator(device=device)
    for k in range(k0, k0 + n):
        common.sync(device)
        t0 = time.perf_counter()
        x0 = batches.batch(k, device=device)
        step_generator(seed, k, STREAM_LOSS, generator=gen)
        torch.manual_seed(step_seed(seed, k, STREAM_DROPOUT))
        res = step(state, x0, gen)
        common.sync(device)
        if times is not None:
            times.append(time.perf_counter() - t0)
        if losses is not None:
            losses.append(float(res.result.total))
        if not res.ok:
            raise RuntimeError(f"non-finite loss at step {k}")


def measure(loss: str, batch: int, device: torch.device, backend: str, steps: int, warmup: int, check: int) -> dict:
    exp = C.experiment_from_wire(common.toy_experiment(loss, batch=batch))
    seed = int(exp.training.seed)
    batches = make_batches(exp.data, batch, seed)
    plain = T.build_state(exp, device)
    fast = T.build_state(exp, device)
    captured = F.CapturedStep(fast, backend=backend)
    # the same K updates from the same start: losses and parameters of both paths
    la, lb = [], []
    _run(plain, T.train_step, batches, seed, device, 0, check, None, la)
    t_capture = time.perf_counter()
    _run(fast, captured, batches, seed, device, 0, 1, None, lb)  # the first call captures
    capture_seconds = time.perf_counter() - t_capture
    _run(fast, captured, batches, seed, device, 1, check - 1, None, lb)
    dloss = max(abs(a - b) for a, b in zip(la, lb))
    dparam = max(float((p - q).abs().max()) for p, q in zip(plain.network.parameters(), fast.network.parameters()))
    bitwise = all(torch.equal(p, q) for p, q in zip(plain.network.parameters(), fast.network.parameters()))
    # throughput, alternating blocks so that a change of the machine's load hits both
    tp: list[float] = []
    tf: list[float] = []
    _run(plain, T.train_step, batches, seed, device, check, warmup, None, None)
    _run(fast, captured, batches, seed, device, check, warmup, None, None)
    k = check + warmup
    block = max(1, steps // 5)
    while len(tp) < steps:
        _run(plain, T.train_step, batches, seed, device, k, block, tp, None)
        _run(fast, captured, batches, seed, device, k, block, tf, None)
        k += block
    mp, mf = statistics.median(tp), statistics.median(tf)
    return {"loss": loss, "batch": batch, "backend": backend, "steps": len(tp),
            "plainItPerSec": 1 / mp, "graphItPerSec": 1 / mf, "speedup": mp / mf,
            "plainMedianMs": 1000 * mp, "graphMedianMs": 1000 * mf, "captureSeconds": capture_seconds,
            "checkSteps": check, "maxAbsLossDiff": dloss, "maxAbsParamDiff": dparam, "bitwiseEqualParams": bitwise}


def main() -> None:
    ap = common.arguments(__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="cuda_graph", choices=["cuda_graph", "eager"])
    common.case_arguments(ap, steps=100, warmup=5, step_help="timed steps per path and case")
    ap.add_argument("--check", type=int, default=20, help="steps of the equality check")
    ns, threads, before = common.start(ap)
    device = torch.device(ns.device)
    rows = common.over_cases(
        ns, lambda b, loss: measure(loss, b, device, ns.backend, ns.steps, ns.warmup, ns.check),
        lambda r: (f"plain {r['plainItPerSec']:8.1f} it/s  graph {r['graphItPerSec']:8.1f} it/s  "
                   f"× {r['speedup']:5.2f}  |Δloss| {r['maxAbsLossDiff']:.2e} |Δθ| {r['maxAbsParamDiff']:.2e}"
                   f"{' (bitwise)' if r['bitwiseEqualParams'] else ''}  capture {r['captureSeconds']:.2f} s"))
    target = {r["loss"]: r["speedup"] >= 3 for r in rows if r["loss"] in ("dsm", "order3")}
    doc = common.record("engine.step_graph", before, ns.device, threads,
                        target="speedup ≥ 3 for dsm and order3 (issue 13)", targetMet=target,
                        experiment="configs/toy.ts checkerboard VE preset (MLP 64/128/512, Adam 1e-3, clip 1), bench/engine/common.py losses",
                        results=rows)
    common.save(ns, f"engine.step_graph.{device.type}", doc)


if __name__ == "__main__":
    main()

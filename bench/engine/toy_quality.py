"""Toy quality after a fixed budget, directly in Python: train each loss on a toy data set (VE)
for the same number of steps, then the ODE NLL (nats) of fresh test samples beside the entropy
floor (log 32 for the checkerboard) — the demo's numbers without the worker, to size its budget,
and the paper budget on a GPU (bench/gpu/toy_paper.sh), where no worker socket is available.

    python bench/engine/toy_quality.py --losses dsm,order3,dsm_fpe --batch 1000 --steps 2000
    python bench/engine/toy_quality.py --device cuda --cuda-graph --dataset mog1d --batch 5000 --steps 100000 \
        --workdir runs/toy-paper --time-limit 500     # resumable: run again to continue

With --workdir every (dataset, loss) trains in its own run directory and resumes from its meta
checkpoint; --time-limit stops training cleanly (meta checkpoint) and skips that loss's evaluation.

Writes bench/results/engine.toy_quality.<device>[.<tag>].json (and, with --pictures DIR, one
density/samples PNG per loss).
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import common  # noqa: F401
import torch

from fpdiff import config as C
from fpdiff import plots as PL
from fpdiff import toys
from fpdiff import train as T
from fpdiff.likelihood import ode_likelihood
from fpdiff.toys import checkerboard_log_prob


def main() -> None:
    ap = common.arguments(__doc__)
    ap.add_argument("--losses", default="dsm,order3,dsm_fpe")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--n", type=int, default=1000, help="test samples for the NLL")
    ap.add_argument("--tol", type=float, default=1e-5, help="ODE rtol = atol")
    ap.add_argument("--grid", type=int, default=0, help="density grid points per axis for pictures (0: none)")
    ap.add_argument("--pictures", default="", help="directory for PNGs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="checkerboard", choices=["checkerboard", "mog1d"])
    ap.add_argument("--cuda-graph", action="store_true", help="training.cudaGraph (CUDA only; else the plain step)")
    ap.add_argument("--workdir", default="", help="keep run directories here and resume them (default: temporary)")
    ap.add_argument("--time-limit", type=float, default=0.0, help="seconds of training for this call (0: none)")
    ns, threads, before = common.start(ap)
    deadline = time.monotonic() + ns.time_limit if ns.time_limit > 0 else None
    device = torch.device(ns.device)
    x_test = toys.sample_toy(ns.dataset, ns.n, generator=torch.Generator().manual_seed(10**6 + ns.seed)).to(device)
    floor = toys.toy_entropy(ns.dataset)
    rows = []
    for loss in ns.losses.split(","):
        wire = common.toy_experiment(loss, batch=ns.batch, n_iters=ns.steps, seed=ns.seed, dataset=ns.dataset,
                                     log_freq=max(1, ns.steps // 10),
                                     snapshot_freq=max(1, ns.steps // 20) if ns.workdir else 10**9,
                                     cuda_graph=ns.cuda_graph)
        exp = C.experiment_from_wire(wire)
        events: list = []
        stop = (lambda: time.monotonic() > deadline) if deadline is not None else None
        try:
            if ns.workdir:
                workdir = os.path.join(ns.workdir, f"{ns.dataset}_{loss}")
                os.makedirs(workdir, exist_ok=True)
                resume = os.path.exists(os.path.join(workdir, "checkpoints-meta", "checkpoint.pth"))
                state, res = T.train(exp, workdir, device=device, resume=resume, callback=events.append, should_stop=stop)
            else:
                with tempfile.TemporaryDirectory(prefix="fpd-quality-") as workdir:
                    state, res = T.train(exp, workdir, device=device, callback=events.append, should_stop=stop)
        except T.TrainingCancelled as exc:
            print(f"{loss:8s} {ns.dataset}: stopped by --time-limit at step {exc.step} of {ns.steps}; run again to resume", flush=True)
            rows.append({"loss": loss, "dataset": ns.dataset, "status": "stopped", "step": exc.step, "steps": ns.steps})
            continue
        losses = [(e["step"], e["loss"]) for e in events if e["type"] == "metrics"]
        ema = state.score.network
        state.ema.copy_to(ema.parameters())  # evaluate the EMA weights (the training state is done with)
        ema.eval()
        t0 = time.perf_counter()
        lik = ode_likelihood(state.score, x_test, rtol=ns.tol, atol=ns.tol, divergence="exact")
        eval_s = time.perf_counter() - t0
        nll = -lik.logp.double()
        row = {"loss": loss, "dataset": ns.dataset, "status": res.status, "step": res.step, "steps": res.steps,
               "batch": ns.batch, "cudaGraph": bool(ns.cuda_graph), "trainSeconds": res.seconds,
               "itPerSec": res.steps / max(res.seconds, 1e-9), "nll": float(nll.mean()),
               "stderr": float(nll.std() / math.sqrt(ns.n)), "floor": floor,
               "gap": None if floor is None else float(nll.mean()) - floor,
               "evalSeconds": eval_s, "nfe": lik.nfe, "trainLoss": losses}
        if ns.grid and ns.pictures and ns.dataset == "checkerboard":
            g = torch.linspace(-4.4, 4.4, ns.grid)
            yy, xx = torch.meshgrid(g, g, indexing="ij")
            pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
            t0 = time.perf_counter()
            dens = ode_likelihood(state.score, pts.to(device), rtol=ns.tol, atol=ns.tol, divergence="exact").logp.cpu()
            row["gridSeconds"] = time.perf_counter() - t0
            PL.panels_figure(os.path.join(ns.pictures, f"{ns.dataset}_{loss}.png"), [
                PL.DensityPanel(g, g, dens.reshape(ns.grid, ns.grid), title=f"{loss}: NLL {row['nll']:.3f}"),
                PL.DensityPanel(g, g, checkerboard_log_prob(pts).reshape(ns.grid, ns.grid), title="truth (log 32 = 3.466)"),
            ])
        rows.append(row)
        print(f"{ns.dataset} {loss:8s} step {res.step} (+{res.steps} × {ns.batch}): train {res.seconds:7.1f} s "
              f"({row['itPerSec']:.2f} it/s), NLL {row['nll']:.4f} ± {row['stderr']:.4f} (floor {floor}), "
              f"eval {eval_s:.1f} s / {lik.nfe} nfe", flush=True)
    doc = common.record("engine.toy_quality", before, ns.device, threads, ompWaitPolicy=os.environ.get("OMP_WAIT_POLICY"),
                        testSamples=ns.n, odeTol=ns.tol, results=rows)
    data = "" if ns.dataset == "checkerboard" else f".{ns.dataset}"
    common.save(ns, f"engine.toy_quality{data}.{device.type}", doc)


if __name__ == "__main__":
    main()

"""Sizing the toy main job's fine-tune protocol directly in Python (no worker): train a first-order
DSM base, continue copies of it with each loss for the same number of further updates (the
control: DSM alone), then measure each model on the same test points — NLL by the ODE (paired
difference to the control), the density's mass on the checkerboard's squares, and the absolute
score-FPE residual at small t.

    python bench/engine/toy_finetune.py --base-steps 3000 --steps 300 --batch 1000 --lr 2e-3 \
        --schedule cosine --methods dsm,order3,dsm_fpe --alpha 1e-4 --seeds 0,1

Writes bench/results/engine.toy_finetune.<device>[.<tag>].json.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import subprocess
import tempfile
import time

import common  # noqa: F401
import torch

from fpdiff import config as C
from fpdiff import toys
from fpdiff import train as T
from fpdiff.diagnostics import fpe_residual_curve, mass_on_support, ode_nll
from fpdiff.score import score_model


@functools.lru_cache(maxsize=None)
def preset(name: str) -> str:
    """A toy preset as zod resolves it (configs/toy.ts, through the built dist/), as JSON."""
    code = f"import {{getPreset}} from './dist/configs/index.js'; console.log(JSON.stringify(getPreset({json.dumps(name)}).experiment))"
    return subprocess.run(["node", "--input-type=module", "-e", code], cwd=common.ROOT, check=True, capture_output=True,
                          text=True).stdout


def experiment(loss: str, ns: argparse.Namespace, *, n_iters: int, lr: float, seed: int, ema: float, start: int = 0) -> dict:
    """The preset toy/checkerboard_ve_<loss> with this run's budget, network and weights; with
    --schedule cosine the lr decays over the updates from `start` (optim.cosineDecayFrom)."""
    exp = json.loads(preset(f"toy/checkerboard_ve_{loss}"))
    exp["training"].update({"batchSize": ns.batch, "nIters": n_iters, "seed": seed, "logFreq": 10**9,
                            "snapshotFreq": n_iters, "snapshotFreqForPreemption": n_iters})
    if loss == "dsm_fpe":
        exp["loss"]["terms"][1].update({"alpha": ns.alpha, "m": ns.m})
    exp["model"].update({"hidden": [ns.hidden] * ns.depth, "width": ns.width, "emaRate": ema})
    exp["optim"]["lr"] = lr
    if ns.schedule == "cosine":
        exp["optim"]["cosineDecayFrom"] = start
    return exp


def evaluate(state: T.TrainState, x_test: torch.Tensor, axes, law, ns) -> dict:
    net = copy.deepcopy(state.network)
    state.ema.copy_to(net.parameters())
    net.eval()
    model = score_model(net, state.sde, state.experiment.model)
    t0 = time.perf_counter()
    per, nfe, solvers = ode_nll(model, x_test, rtol=ns.tol, atol=ns.tol)
    nll_s = time.perf_counter() - t0
    out = {"perSample": per.double(), "nll": float(per.mean()), "nfe": nfe, "nllSeconds": nll_s, "solvers": solvers}
    if ns.grid:
        t0 = time.perf_counter()
        grid = -ode_nll(model, toys.grid_points(axes).float(), rtol=ns.tol, atol=ns.tol)[0]
        out.update(mass_on_support(law, axes, grid))
        out["gridSeconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = [float(v) for v in torch.logspace(math.log10(ns.t_min), 0, ns.nt)]
    res = fpe_residual_curve(model, x_test[:256], ts, generator=torch.Generator().manual_seed(5))
    out["residual"] = res["residual"]
    out["residualT"] = ts
    out["residualSeconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = common.arguments(__doc__)
    ap.add_argument("--methods", default="dsm,order3,dsm_fpe")
    ap.add_argument("--base-steps", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=300, help="further updates per method")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ft-lr", type=float, default=0.0, help="continuation lr (0: --lr)")
    ap.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--ft-ema", type=float, default=0.0, help="continuation EMA (0: --ema)")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--alpha", type=float, default=1e-4)
    ap.add_argument("--m", type=int, default=2)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--grid", type=int, default=40)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--t-min", type=float, default=1e-4)
    ap.add_argument("--nt", type=int, default=5)
    ap.add_argument("--base-ckpt", default="", help="continue this base checkpoint instead of training one")
    ap.add_argument("--keep-base", default="", help="copy the trained base checkpoint here")
    ap.add_argument("--ft-batch", type=int, default=0, help="continuation batch (0: --batch)")
    ns, threads, before = common.start(ap)
    x_test = toys.test_points("checkerboard", ns.n, seed=1)
    law = toys.toy_law("checkerboard")
    axes = toys.density_grid("checkerboard", ns.grid) if ns.grid else None
    rows: list[dict] = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fpd-ft-") as tmp:
        if ns.base_ckpt:  # a base trained by an earlier run of this script (same --base-steps, network)
            base_ck = ns.base_ckpt
        else:
            base_dir = os.path.join(tmp, "base")
            exp = C.experiment_from_wire(experiment("dsm", ns, n_iters=ns.base_steps, lr=ns.lr, seed=100, ema=ns.ema))
            state, res = T.train(exp, base_dir, device="cpu")
            base_ck = os.path.join(base_dir, "checkpoints-meta", "checkpoint.pth")
            if ns.keep_base:
                import shutil

                shutil.copyfile(base_ck, ns.keep_base)
            ev = evaluate(state, x_test, axes, law, ns)
            print(f"base dsm {res.steps} × {ns.batch}: {res.seconds:.1f} s ({res.steps / res.seconds:.1f} it/s), NLL {ev['nll']:.4f}, "
                  f"mass {ev.get('mass_on_support', float('nan')):.3f}, eval nll {ev['nllSeconds']:.1f} s grid {ev.get('gridSeconds', 0):.1f} s "
                  f"residual {ev['residualSeconds']:.1f} s  res {['%.3g' % r for r in ev['residual']]}", flush=True)
            rows.append({"method": "base", "seed": None, "trainSeconds": res.seconds, **{k: v for k, v in ev.items() if k != "perSample"}})
        for seed in [int(s) for s in ns.seeds.split(",")]:
            control = None
            for method in ns.methods.split(","):
                wire = experiment(method, ns, n_iters=ns.base_steps + ns.steps, lr=ns.ft_lr or ns.lr, seed=seed,
                                  ema=ns.ft_ema or ns.ema, start=ns.base_steps)
                wire["training"]["batchSize"] = ns.ft_batch or ns.batch
                exp = C.experiment_from_wire(wire)
                state, res = T.train(exp, os.path.join(tmp, f"{method}-{seed}"), device="cpu", init=base_ck)
                ev = evaluate(state, x_test, axes, law, ns)
                if control is None:
                    control = ev["perSample"]
                d = ev["perSample"] - control
                diff, se = float(d.mean()), float(d.std() / math.sqrt(d.numel()))
                print(f"seed {seed} {method:8s} +{res.steps}: {res.seconds:.1f} s ({res.steps / res.seconds:.1f} it/s), NLL {ev['nll']:.4f} "
                      f"(Δ {diff:+.4f} ± {se:.4f}), mass {ev.get('mass_on_support', float('nan')):.3f}, res {['%.3g' % r for r in ev['residual']]}",
                      flush=True)
                rows.append({"method": method, "seed": seed, "trainSeconds": res.seconds, "diff": diff, "diffStderr": se,
                             **{k: v for k, v in ev.items() if k != "perSample"}})
    doc = common.record("engine.toy_finetune", before, "cpu", threads, args=vars(ns), seconds=time.perf_counter() - t_all,
                        results=rows)
    print(f"total {doc['seconds']:.0f} s; load before {before['loadAverage']} after {doc['loadAverageAfter']}")
    common.save(ns, "engine.toy_finetune.cpu", doc)


if __name__ == "__main__":
    main()

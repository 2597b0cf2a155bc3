"""The same toy training as ``train.run`` through the worker, run directly in Python (no worker,
no ZeroMQ, no events): the denominator of the bridge-overhead ratio (target ≤ 1.02).

    python bench/engine/direct_loop.py --loss dsm --batch 1000 --steps 200
    python bench/engine/direct_loop.py --experiment exp.json --steps 200   # the exact wire experiment
    python bench/engine/direct_loop.py --experiment exp.json --evaluate    # plus train.run's evaluation

It calls ``fpdiff.train.train`` — the function ``train.run`` calls — with callback=None (with
``--evaluate``, also the in-loop evaluation hooks ``train.run`` runs by default) in a fresh work
directory, on the threads the worker would use, ``--repeats`` times; it reports the loop's own
seconds (``TrainResult.seconds``, what train.run returns as ``seconds``) and the wall time of
build + run. Compare with the TypeScript side's wall time of ``session.train`` (or the op's
``seconds``) for the same experiment and steps. Writes bench/results/engine.direct_loop.<device>.json.
"""

from __future__ import annotations

import os
import json
import shutil
import statistics
import tempfile
import time

import common  # noqa: F401
import torch

from fpdiff import config as C
from fpdiff import train as T
from fpdiff.evaluation.during_training import TrainingEvaluator


def main() -> None:
    ap = common.arguments(__doc__)
    ap.add_argument("--experiment", help="a wire experiment (JSON file); default: the toy preset of --loss")
    ap.add_argument("--loss", default="dsm", choices=sorted(common.LOSSES))
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200, help="training.nIters of the run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--evaluate", action="store_true",
                    help="run train.run's in-loop evaluation too (held-out losses, snapshot samples, TensorBoard), "
                         "as the op does unless asked evaluate: false")
    ns, threads, before = common.start(ap)
    if ns.experiment:
        with open(ns.experiment) as fh:
            wire = json.load(fh)
        wire.setdefault("training", {})["nIters"] = ns.steps
    else:
        wire = common.toy_experiment(ns.loss, batch=ns.batch, n_iters=ns.steps)
    exp = C.experiment_from_wire(wire)
    runs = []
    for i in range(ns.repeats):
        workdir = tempfile.mkdtemp(prefix="fpd-direct-")
        try:
            t0 = time.perf_counter()
            hooks = TrainingEvaluator(exp) if ns.evaluate else None
            _, res = T.train(exp, workdir, device=ns.device, callback=None, hooks=hooks)
            wall = time.perf_counter() - t0
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        runs.append({"loopSeconds": res.seconds, "wallSeconds": wall, "steps": res.steps,
                     "lastLoss": res.last_metrics["loss"] if res.last_metrics else None})
        print(f"run {i}: loop {res.seconds:.3f} s, wall {wall:.3f} s, {res.steps / res.seconds:.2f} it/s", flush=True)
    loop = statistics.median(r["loopSeconds"] for r in runs)
    doc = common.record("engine.direct_loop", before, ns.device, threads, ompWaitPolicy=os.environ.get("OMP_WAIT_POLICY"),
                        experiment=wire, steps=ns.steps, evaluate=ns.evaluate, runs=runs, medianLoopSeconds=loop,
                        medianWallSeconds=statistics.median(r["wallSeconds"] for r in runs), itPerSec=ns.steps / loop,
                        note="loop seconds include the final snapshot + meta checkpoint writes, as train.run's do")
    common.save(ns, f"engine.direct_loop.{torch.device(ns.device).type}", doc)


if __name__ == "__main__":
    main()

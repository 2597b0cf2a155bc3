"""CPU benchmark: one process vs two gloo processes (PyTorch's elastic launcher via fpdiff.launch)
on a small config — per-step time and the equality check (the 2-process job against one process
taking the same update: each rank's shard with that rank's draws, gradients averaged).

    PYTHONPATH=py python bench/scale/ddp_cpu.py [--model toy|ncsnpp] [--loss dsm|order2|order3] [--steps 20]

Writes bench/results/scale_ddp_cpu_<stamp>.json with the machine (cores, load average)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "bench", "numerics"))
sys.path.insert(0, os.path.join(ROOT, "py", "tests"))  # _resolve: experiments resolved by the TS DSL

from common import machine, write  # noqa: E402

from fpdiff import config as C  # noqa: E402
from fpdiff import distributed as D  # noqa: E402
from fpdiff import train as T  # noqa: E402
from fpdiff.data import STREAM_DROPOUT, STREAM_LOSS, make_batches  # noqa: E402

DSM = {"kind": "dsm", "weighting": "conventional", "reduce": "mean"}
LOSSES = {"dsm": [DSM], "order2": [DSM, {"kind": "highOrder", "order": 2}], "order3": [DSM, {"kind": "highOrder", "order": 3}]}


def experiment(model: str, loss: str, steps: int, batch: int, data_dir: str) -> dict:
    if model == "toy":
        m = {"kind": "mlp", "embedDim": 64, "timeHidden": [128, 128], "xHidden": [128, 128], "width": 128, "hidden": [512, 512]}
        data = {"kind": "toy", "dataset": "checkerboard"}
    else:
        m = {"kind": "ncsnpp", "nf": 16, "chMult": [1, 2], "numResBlocks": 1, "attnResolutions": [16], "dropout": 0.0}
        data = {"kind": "cifar10", "path": data_dir}
    return {"name": "bench/ddp", "sde": {"kind": "ve"}, "model": m, "data": data, "loss": {"terms": LOSSES[loss]},
            "optim": {"kind": "adam", "lr": 1e-3, "warmup": 0, "gradClip": 1},
            "training": {"batchSize": batch, "nIters": steps, "logFreq": 1, "snapshotFreq": 10 ** 6,
                         "snapshotFreqForPreemption": 10 ** 6, "seed": 0, "deterministic": True}}


def run_job(spec: dict, nproc: int, tmp: str, tag: str) -> dict:
    path = os.path.join(tmp, f"{tag}.spec.json")
    spec = {**spec, "workdir": os.path.join(tmp, tag), "out": os.path.join(tmp, tag)}
    json.dump(spec, open(path, "w"))
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "py")}
    job = os.path.join(HERE, "ddp_job.py")
    cmd = [sys.executable, job, path] if nproc == 1 else [sys.executable, "-m", "fpdiff.launch", "--nproc", str(nproc), "--", job, path]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    out = json.load(open(spec["out"] + ".json"))
    out["params"] = torch.load(spec["out"] + ".params.pt")
    return out


def step_times(stamps) -> list[float]:
    t = [s[1] for s in stamps]
    return [b - a for a, b in zip(t[1:], t[2:])]  # the first step (warm-up) is left out


def reference(spec: dict, world: int, steps: int) -> tuple[list[float], list[torch.Tensor]]:
    exp = C.experiment_from_wire(spec["experiment"])
    state = T.build_state(exp, "cpu")
    batches = make_batches(exp.data, int(exp.training.batch_size), 0)
    losses = []
    for k in range(steps):
        x = batches.batch(k)
        state.optimizer.zero_grad(set_to_none=False)
        tot = 0.0
        for r in range(world):
            torch.manual_seed(D.rank_seed(0, k, STREAM_DROPOUT, r))
            res = state.loss(state.score, D.shard(x, r, world), generator=D.rank_generator(0, k, STREAM_LOSS, r))
            (res.total / world).backward()
            tot += float(res.total) / world
        torch.nn.utils.clip_grad_norm_(list(state.network.parameters()), 1.0)
        state.optimizer.step()
        state.step += 1
        state.ema.update(state.network.parameters())
        losses.append(tot)
    return losses, [p.detach() for p in state.network.parameters()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("toy", "ncsnpp"), default="toy")
    ap.add_argument("--loss", choices=sorted(LOSSES), default="order2")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=None)
    ns = ap.parse_args()
    batch = ns.batch or (2048 if ns.model == "toy" else 16)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "data")
        if ns.model == "ncsnpp":
            from fpdiff.synthetic import write_synthetic_cifar10

            write_synthetic_cifar10(data_dir, 256, 0)
        from _resolve import resolved

        spec = {"experiment": resolved(experiment(ns.model, ns.loss, ns.steps, batch, data_dir))}
        one = run_job(spec, 1, tmp, "one")
        two = run_job(spec, 2, tmp, "two")
        ref_losses, ref_params = reference(spec, 2, ns.steps)
    t1, t2 = step_times(one["stamps"]), step_times(two["stamps"])
    loss_two = [s[2] for s in two["stamps"]]
    max_loss_rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(loss_two, ref_losses))
    max_param = max(float((a - b).abs().max()) for a, b in zip(two["params"], ref_params))
    payload = {
        "machine": machine("cpu"),
        "config": {"model": ns.model, "loss": ns.loss, "steps": ns.steps, "globalBatch": batch},
        "one_process": {"median_step_s": statistics.median(t1), "threads": one["threads"]},
        "two_processes_gloo": {"median_step_s": statistics.median(t2), "threads_per_rank": two["threads"]},
        "speedup_2_over_1": statistics.median(t1) / statistics.median(t2),
        "equality_vs_one_process_same_draws": {"max_rel_loss_diff": max_loss_rel, "max_abs_param_diff": max_param},
        "note": "both runs on the same cores; the 2-process job splits them (threads per rank = cores // 2)",
    }
    print(json.dumps({k: v for k, v in payload.items() if k != "machine"}, indent=1))
    print("wrote", write("scale_ddp_cpu", payload))


if __name__ == "__main__":
    main()

"""A training job run by the tests under real torchrun processes (gloo on CPU).

    python -m torch.distributed.run --standalone --nproc_per_node N py/tests/_ddp_job.py SPEC.json

SPEC: {experiment (wire form), workdir, out, maxSteps?, init?, resume?, killRank?, killAtStep?,
pidFile?, stopAtStep?}, or {runs: [SPEC, …]} to run several in the same processes. Every rank trains with ``fpdiff.train.train(dist=…)``; each rank writes
``<out>.rank<r>.pt`` with its final parameters, EMA and step, and rank 0 also writes the events.
``killRank``/``killAtStep``: that rank exits abruptly (os._exit) before that step — a dead rank.
"""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fpdiff import config as C  # noqa: E402
from fpdiff import distributed as D  # noqa: E402
from fpdiff import train as T  # noqa: E402


def main() -> int:
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(1)
    d = D.init_from_env()
    assert d is not None, "run me under torchrun with more than one process"
    D.die_with_parent()
    for sub in spec.get("runs", [spec]):  # several runs share one start-up of the processes
        run_one({**spec, **sub}, d)
    return 0


def run_one(spec: dict, d) -> None:
    if spec.get("pidFile"):
        with open(f"{spec['pidFile']}.{d.rank}", "w") as fh:
            fh.write(str(os.getpid()))
    exp = C.experiment_from_wire(spec["experiment"])
    events: list[dict] = []
    kill_rank, kill_at = spec.get("killRank"), spec.get("killAtStep")

    def should_stop() -> bool:
        # called once per step on every rank: the place to die abruptly, or to ask for a stop
        should_stop.calls += 1
        if kill_rank == d.rank and kill_at is not None and should_stop.calls > kill_at:
            os._exit(7)
        stop_at = spec.get("stopAtStep")
        return d.is_main and stop_at is not None and should_stop.calls > stop_at

    should_stop.calls = 0
    status = "completed"
    try:
        state, res = T.train(exp, spec["workdir"], device="cpu", resume=bool(spec.get("resume")), init=spec.get("init"),
                             max_steps=spec.get("maxSteps"), callback=events.append, event_interval=0.0,
                             should_stop=should_stop, dist=d)
        step = state.step
        status = res.status
    except T.TrainingCancelled as exc:
        status, step = "cancelled", exc.step
        state = None
    if state is not None:
        torch.save({"params": [p.detach().clone() for p in state.network.parameters()],
                    "ema": [s.clone() for s in state.ema.shadow_params], "step": step,
                    "adam": state.optimizer.state_dict()["state"]}, f"{spec['out']}.rank{d.rank}.pt")
    if d.is_main:
        with open(spec["out"] + ".events.json", "w") as fh:
            json.dump({"status": status, "step": step, "events": events}, fh)


if __name__ == "__main__":
    sys.exit(main())

"""Training ops (docs/contracts.md §3 "Training ops"): ``train.run`` drives ``fpdiff.train``.

Importing this module also registers the toy and plot ops (``ops/toy.py``), which belong to the
same job (train, evaluate, draw) and have no area of their own in ``ops.AREAS``.
"""

from __future__ import annotations

import os
from typing import Any

from .. import distributed
from .. import train as T
from ..data import DataError
from ..evaluation.during_training import TrainingEvaluator
from ..protocol import BAD_REQUEST, DIVERGED
from . import Args, Cancelled, OpContext, OpError, op
from .state import LoadedModel, device_arg, experiment_arg, models


def opt(a: Args, kind: str, key: str, **kw: Any) -> Any:
    """An optional argument: None when absent or null, else read by ``Args.<kind>``."""
    a.seen.add(key)
    if a.raw.get(key) is None:
        return None
    return getattr(a, kind)(key, **kw)


def _register(ctx: OpContext, handle: str, state: T.TrainState, source: Any) -> None:
    state.network.eval()
    models(ctx.state)[handle] = LoadedModel(
        handle=handle, experiment=state.experiment, network=state.network, sde=state.sde,
        ema=state.ema, step=state.step, source=source,
    )


@op("train.run")
def train_run(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Train (or fine-tune, or resume) an experiment; events: progress, metrics, checkpoint, warning."""
    experiment = experiment_arg(args)
    workdir = args.str("workdir")
    handle = args.str("handle", experiment.name)
    resume = args.bool("resume", False)
    init_raw = opt(args, "map", "init")
    init = None
    if init_raw is not None:
        init_args = Args(init_raw, "args.init")
        init = init_args.str("checkpoint")
        init_args.done()
        if not os.path.isfile(init):
            raise OpError(BAD_REQUEST, f"args.init.checkpoint: no such file {init!r}", "args.init.checkpoint")
    device = device_arg(args)
    max_steps = opt(args, "int", "maxSteps", min=0)
    interval = args.float("eventIntervalSeconds", 1.0, min=0)
    evaluate = args.bool("evaluate", True)
    args.done()
    if not workdir:
        raise OpError(BAD_REQUEST, "args.workdir: must not be empty", "args.workdir")
    workdir = os.path.abspath(workdir)

    holder: dict[str, T.TrainState] = {}

    def should_stop() -> bool:
        return ctx.cancel_event.is_set()

    try:
        state, result = T.train(
            experiment, workdir, device=device, resume=resume, init=init, max_steps=max_steps,
            callback=ctx.emit, event_interval=interval, should_stop=should_stop, on_state=lambda s: holder.__setitem__("state", s),
            dist=distributed.current(), hooks=TrainingEvaluator(experiment) if evaluate else None,
        )
    except T.TrainingCancelled as exc:
        state = holder.get("state")
        if state is not None:
            _register(ctx, handle, state, exc.checkpoint["path"] if exc.checkpoint else None)
        raise Cancelled(str(exc)) from None
    except T.Diverged as exc:
        raise OpError(DIVERGED, str(exc)) from None
    except T.TrainingError as exc:
        where = f"args.{exc.field}" if exc.field else None
        raise OpError(BAD_REQUEST, f"{where}: {exc.message}" if where else exc.message, where) from None
    except distributed.PeerFailed as exc:
        raise OpError(BAD_REQUEST, f"another rank of the job failed to start: {exc}") from None
    except DataError as exc:
        raise OpError(BAD_REQUEST, f"args.experiment.data: {exc}", "args.experiment.data.path") from None
    last = result.checkpoints[-1]["path"] if result.checkpoints else state.source
    _register(ctx, handle, state, last)
    return {"handle": handle, **result.to_wire()}


from . import toy as _toy  # noqa: E402,F401  (registers toy.* and plot.*)

"""Training ops (docs/contracts.md §3 "Training ops"): ``train.run`` drives ``fpdiff.train``.

Importing this module also registers the toy and plot ops (``ops/toy.py``), which belong to the
same job (train, evaluate, draw) and have no area of their own in ``ops.AREAS``.
"""

from __future__ import annotations

import os
from typing import Any

from .. import distributed
from .. import train as training
from .._generated import types as T
from ..data import DataError
from ..evaluation.during_training import TrainingEvaluator
from ..protocol import BAD_REQUEST, DIVERGED
from . import Cancelled, OpContext, OpError, bad_request, op
from .state import LoadedModel, models, resolve_device


def _register(ctx: OpContext, handle: str, state: training.TrainState, source: Any) -> None:
    state.network.eval()
    models(ctx.state)[handle] = LoadedModel(
        handle=handle, experiment=state.experiment, network=state.network, sde=state.sde,
        ema=state.ema, step=state.step, source=source,
    )


@op("train.run")
def train_run(args: T.TrainRunArgs, ctx: OpContext) -> dict[str, Any]:
    """Train (or fine-tune, or resume) an experiment; events: progress, metrics, checkpoint, warning."""
    handle = args.handle or args.experiment.name
    init = args.init.checkpoint if args.init is not None else None
    if init is not None and not os.path.exists(init):   # a file, or a work directory (its newest snapshot)
        raise bad_request("args.init.checkpoint", f"no such file {init!r}")
    workdir = os.path.abspath(args.workdir)
    holder: dict[str, training.TrainState] = {}
    try:
        state, result = training.train(
            args.experiment, workdir, device=resolve_device(args.device), resume=args.resume, init=init,
            max_steps=args.max_steps, callback=ctx.emit, event_interval=args.event_interval_seconds,
            should_stop=ctx.cancel_event.is_set, on_state=lambda s: holder.__setitem__("state", s),
            dist=distributed.current(), hooks=TrainingEvaluator(args.experiment) if args.evaluate else None,
        )
    except training.TrainingCancelled as exc:
        state = holder.get("state")
        if state is not None:
            _register(ctx, handle, state, exc.checkpoint["path"] if exc.checkpoint else None)
        raise Cancelled(str(exc)) from None
    except training.Diverged as exc:
        raise OpError(DIVERGED, str(exc)) from None
    except training.TrainingError as exc:
        if exc.field:
            raise bad_request(f"args.{exc.field}", exc.message) from None
        raise OpError(BAD_REQUEST, exc.message) from None
    except distributed.PeerFailed as exc:
        raise OpError(BAD_REQUEST, f"another rank of the job failed to start: {exc}") from None
    except DataError as exc:
        raise bad_request("args.experiment.data.path", str(exc)) from None
    last = result.checkpoints[-1]["path"] if result.checkpoints else state.source
    _register(ctx, handle, state, last)
    return {"handle": handle, **result.to_wire()}


from . import toy as _toy  # noqa: E402,F401  (registers toy.* and plot.*)

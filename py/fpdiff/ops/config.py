"""Ops of the DSL area: the experiment checked on the Python side, and the SDE schedules.

``config.validate`` rebuilds an experiment from the wire with :mod:`fpdiff.config` and answers the
normalised experiment (as the DSL would resolve it) with its warnings, or BAD_REQUEST naming the
field (``args.experiment.loss.terms[1].alpha``). ``config.schedule`` evaluates an SDE's schedules
with :mod:`fpdiff.sde` in float64, so the TypeScript helpers can be checked against them.
"""

from __future__ import annotations

from typing import Any

from .. import config as C
from ..protocol import BAD_REQUEST
from . import Args, OpContext, OpError, op


def _bad(prefix: str, err: C.ConfigError) -> OpError:
    def where(path: str) -> str:
        return f"{prefix}{path}" if path.startswith("[") or not path else f"{prefix}.{path}"

    first = where(err.path) if err.path else prefix
    lines = [f"{where(p) if p else prefix}: {m}" for p, m in err.errors]
    message = lines[0] if len(lines) == 1 else f"{len(lines)} problems: " + "; ".join(lines)
    return OpError(BAD_REQUEST, message, first)


@op("config.validate", control=True)
def validate(args: Args, ctx: OpContext) -> dict[str, Any]:
    """Validate an experiment; answer it normalised, with its warnings."""
    raw = args.any("experiment")
    args.done()
    try:
        exp = C.experiment_from_wire(raw)
    except C.ConfigError as err:
        raise _bad("args.experiment", err) from None
    return {
        "experiment": C.to_wire(exp),
        "warnings": [{"path": p, "message": m} for p, m in C.lint(exp)],
    }


@op("config.schedule", control=True)
def schedule(args: Args, ctx: OpContext) -> dict[str, Any]:
    """σ(t) or β(t), mean coefficient, std(t), g²(t) and the network label of an SDE, in float64."""
    import torch

    from ..sde import make_sde

    raw_sde = args.any("sde")
    times = args.list("t")
    args.done()
    try:
        cfg = C.section_from_wire(C.SDEConfig, raw_sde, "")
    except C.ConfigError as err:
        raise _bad("args.sde", err) from None
    for i, v in enumerate(times):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise OpError(BAD_REQUEST, f"args.t[{i}]: expected a number in [0, 1], got {v!r}", f"args.t[{i}]")
    sde = make_sde(cfg)
    t = torch.tensor([float(v) for v in times], dtype=torch.float64)
    out: dict[str, Any] = {
        "meanCoef": sde.mean_coef(t).tolist(),
        "std": sde.marginal_std(t).tolist(),
        "g2": sde.g2(t).tolist(),
        "label": sde.label(t).tolist(),
    }
    if isinstance(cfg, C.VESDEConfig):
        out["sigma"] = sde.sigma(t).tolist()
    else:
        out["beta"] = sde.beta(t).tolist()
    return out

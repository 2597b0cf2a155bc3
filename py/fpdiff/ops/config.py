"""Ops of the DSL area: the experiment as the worker decodes it, and the SDE schedules.

``config.validate`` answers the experiment as Python rebuilt it from the wire (the generated schema
already refused anything malformed, naming ``args.experiment.loss.terms[1].alpha``), so a client can
check that both sides read it alike. ``config.schedule`` evaluates an SDE's schedules with
:mod:`fpdiff.sde` in float64, so the TypeScript helpers can be checked against them.
"""

from __future__ import annotations

from .._generated import types as T
from . import OpContext, op


@op("config.validate")
def validate(args: T.ConfigValidateArgs, ctx: OpContext) -> T.ConfigValidateResult:
    """The experiment as the worker decoded it."""
    return T.ConfigValidateResult(experiment=args.experiment)


@op("config.schedule")
def schedule(args: T.ConfigScheduleArgs, ctx: OpContext) -> T.ConfigScheduleResult:
    """σ(t) or β(t), mean coefficient, std(t), g²(t) and the network label of an SDE, in float64."""
    import torch

    from ..sde import make_sde

    sde = make_sde(args.sde)
    t = torch.tensor(args.t, dtype=torch.float64)
    ve = isinstance(args.sde, T.VESDEConfig)
    return T.ConfigScheduleResult(
        mean_coef=sde.mean_coef(t).tolist(),
        std=sde.marginal_std(t).tolist(),
        g2=sde.g2(t).tolist(),
        label=sde.label(t).tolist(),
        sigma=sde.sigma(t).tolist() if ve else None,
        beta=None if ve else sde.beta(t).tolist(),
    )

"""What ops share: models loaded in the worker, addressed by handle, and the argument helpers that
turn an experiment or a device on the wire into Python objects.

A :class:`LoadedModel` lives in ``ctx.state`` under ``models[handle]``. ``model.load`` and the
training ops create them; evaluation ops (likelihood, sampling, loss, diagnostics) take
``{model: handle, weights: "ema" | "model"}`` and ask for :meth:`LoadedModel.score_model`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

from .. import config as C
from ..protocol import BAD_REQUEST
from . import Args, OpError, WorkerState


@dataclass
class LoadedModel:
    handle: str
    experiment: C.ExperimentConfig
    network: nn.Module
    sde: Any
    ema: Any = None  # fpdiff.models.EMA, or None when the weights have no average
    step: int = 0
    source: Optional[str] = None  # the checkpoint it came from, if any
    _ema_copy: Optional[nn.Module] = field(default=None, repr=False)
    _ema_copy_step: int = field(default=-1, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def weights_network(self, weights: str = "ema") -> nn.Module:
        """The network with the requested weights; the EMA copy is rebuilt when ``step`` moves."""
        if weights == "model" or self.ema is None:
            return self.network
        if weights != "ema":
            raise OpError(BAD_REQUEST, f"args.weights: expected 'ema' or 'model', got {weights!r}", "args.weights")
        if self._ema_copy is None or self._ema_copy_step != self.step:
            net = copy.deepcopy(self.network)
            self.ema.copy_to(net.parameters())
            net.eval()
            self._ema_copy, self._ema_copy_step = net, self.step
        return self._ema_copy

    def score_model(self, weights: str = "ema", train: bool = False):
        from ..score import score_model

        net = self.weights_network(weights)
        net.train(train)
        return score_model(net, self.sde, self.experiment.model)

    def describe(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.network.parameters())
        return {
            "handle": self.handle,
            "name": self.experiment.name,
            "step": self.step,
            "parameters": n,
            "device": str(self.device),
            "hasEma": self.ema is not None,
            "source": self.source,
        }


def models(state: WorkerState) -> dict[str, LoadedModel]:
    with state.lock:
        reg = state.get("models")
        if reg is None:
            reg = {}
            state.put("models", reg)
        return reg


def get_model(args: Args, state: WorkerState, key: str = "model") -> LoadedModel:
    handle = args.str(key)
    reg = models(state)
    if handle not in reg:
        known = ", ".join(sorted(reg)) or "none (load one with model.load or train one)"
        raise OpError(BAD_REQUEST, f"{args.path}.{key}: no model {handle!r} is loaded; loaded: {known}", f"{args.path}.{key}")
    return reg[handle]


def experiment_arg(args: Args, key: str = "experiment") -> C.ExperimentConfig:
    """Rebuild and validate an experiment from the wire; errors name ``args.experiment.<path>``."""
    raw = args.map(key)
    try:
        return C.experiment_from_wire(raw)
    except C.ConfigError as err:
        where = f"{args.path}.{key}" + (f".{err.path}" if err.path and not err.path.startswith("[") else err.path or "")
        raise OpError(BAD_REQUEST, f"{where}: {err.message}", where) from None


def device_arg(args: Args, key: str = "device") -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    name = args.str(key, "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise OpError(BAD_REQUEST, f"{args.path}.{key}: expected auto, cpu, cuda or cuda:N, got {name!r}", f"{args.path}.{key}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OpError(BAD_REQUEST, f"{args.path}.{key}: CUDA was asked for but this worker's torch sees no GPU", f"{args.path}.{key}")
    return dev

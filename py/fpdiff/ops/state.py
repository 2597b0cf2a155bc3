"""What ops share: models loaded in the worker, addressed by handle, and the argument helpers that
turn an experiment or a device on the wire into Python objects.

A :class:`LoadedModel` lives in ``ctx.state`` under ``models[handle]``. ``model.load`` and the
training ops create them; evaluation ops (likelihood, sampling, loss, diagnostics) take
``{model: handle, weights: "ema" | "model"}`` (checked by the op's schema) and ask for
:meth:`LoadedModel.score_model`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

from .. import config as C
from ..protocol import BAD_REQUEST
from . import OpError, WorkerState, bad_request


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
            "has_ema": self.ema is not None,
            "source": self.source,
        }


def models(state: WorkerState) -> dict[str, LoadedModel]:
    with state.lock:
        reg = state.get("models")
        if reg is None:
            reg = {}
            state.put("models", reg)
        return reg


def get_model(state: WorkerState, handle: str, path: str = "args.model") -> LoadedModel:
    """The model loaded under ``handle``; BAD_REQUEST naming ``path`` and the loaded ones if none."""
    reg = models(state)
    if handle not in reg:
        known = ", ".join(sorted(reg)) or "none (load one with model.load or train one)"
        raise bad_request(path, f"no model {handle!r} is loaded; loaded: {known}")
    return reg[handle]


def resolve_device(name: str, path: str = "args.device") -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise bad_request(path, f"expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise bad_request(path, "CUDA was asked for but this worker's torch sees no GPU")
    return dev


def pick(value: Any, default: Any) -> Any:
    """An optional argument, else the model's own setting."""
    return default if value is None else value


PC_ONLY = ("predictor", "corrector", "snr", "n_steps_each", "N")


def sampler_options(args: Any, model: LoadedModel, *, steps: Optional[int],
                    ode_only: tuple[str, ...] = ("solver", "rtol", "atol", "steps")) -> tuple[str, float, dict[str, Any]]:
    """(method, eps, keyword arguments of ``sampling.pc_sample`` / ``ode_sample``) for a sample
    request: each option the request leaves out is the model's experiment's; an option of the other
    sampler is refused, naming it."""
    cfg = model.experiment.sampling
    method = args.method or cfg.method
    for key in ode_only if method == "pc" else PC_ONLY:
        if getattr(args, key) is not None:
            raise bad_request(f"args.{type(args).WIRE[key]}", f"applies to method {'ode' if method == 'pc' else 'pc'!r}; "
                                                             f"this request samples with {method!r}")
    eps = pick(args.eps, cfg.eps)
    if method == "pc":
        pc = cfg if isinstance(cfg, C.PCSamplingConfig) else C.PCSamplingConfig(N=model.sde.N, eps=eps)
        kw: dict[str, Any] = dict(
            predictor=pick(args.predictor, pc.predictor), corrector=pick(args.corrector, pc.corrector),
            snr=pick(args.snr, pc.snr), n_steps_each=pick(args.n_steps_each, pc.n_steps_each),
            noise_removal=pick(args.noise_removal, pc.noise_removal), N=pick(args.N, pc.N),
        )
        if kw["predictor"] == "none" and kw["corrector"] == "none":
            raise bad_request("args.corrector", 'a PC sampler needs a predictor or a corrector (both are "none")')
    else:
        oc = cfg if isinstance(cfg, C.ODESamplingConfig) else C.ODESamplingConfig(eps=eps)
        solver = pick(args.solver, oc.solver)
        kw = dict(rtol=pick(args.rtol, oc.rtol), atol=pick(args.atol, oc.atol), method=solver,
                  noise_removal=pick(args.noise_removal, oc.noise_removal),
                  options=None if solver == "dopri5" else {"step_size": (1.0 - eps) / pick(steps, 100)})
    return method, eps, kw

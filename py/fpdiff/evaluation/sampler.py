"""The experiment's sampler as plain arguments (Score SDE's ``sampling`` section, resolved), and
one call that draws a batch with it. Used by snapshot sampling and ``sample.shards``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .. import config as C
from .. import sampling as S
from ..score import ScoreModel

Tensor = torch.Tensor


@dataclass(frozen=True)
class SamplerSpec:
    method: str  # "pc" | "ode"
    eps: float
    kwargs: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"method": self.method, "eps": self.eps, **{k: v for k, v in self.kwargs.items() if k != "options"}}


def sampler_spec(experiment: Any, *, method: Optional[str] = None, N: Optional[int] = None,
                 ode_steps: int = 100) -> SamplerSpec:
    """The experiment's sampler (PC: predictor, corrector, snr, steps; ODE: solver, tolerances),
    with ``method`` / ``N`` overriding; sampling eps as Score SDE (VE 1e-5, VP/subVP 1e-3)."""
    cfg = experiment.sampling  # resolved: present, with eps (and N for PC)
    method = method or cfg.method
    eps = cfg.eps
    if method == "pc":
        pc = cfg if isinstance(cfg, C.PCSamplingConfig) else C.PCSamplingConfig(N=int(experiment.sde.N), eps=float(eps))
        n_steps = N if N is not None else int(pc.N)
        kw = dict(predictor=pc.predictor, corrector=pc.corrector, snr=float(pc.snr), n_steps_each=int(pc.n_steps_each),
                  noise_removal=bool(pc.noise_removal), N=int(n_steps))
        return SamplerSpec("pc", float(eps), kw)
    if method != "ode":
        raise ValueError(f"sampling method must be 'pc' or 'ode', got {method!r}")
    oc = cfg if isinstance(cfg, C.ODESamplingConfig) else C.ODESamplingConfig(eps=float(eps))
    kw = dict(rtol=float(oc.rtol), atol=float(oc.atol), method=oc.solver, noise_removal=bool(oc.noise_removal),
              options=None if oc.solver == "dopri5" else {"step_size": (1.0 - float(eps)) / ode_steps})
    return SamplerSpec("ode", float(eps), kw)


def sample_shape(experiment: Any) -> tuple[int, ...]:
    data = experiment.data
    if isinstance(data, C.ToyDataConfig):
        return (int(data.dim or 2),)
    return (int(data.num_channels), int(data.image_size), int(data.image_size))


def draw(model: ScoreModel, spec: SamplerSpec, n: int, shape: tuple[int, ...], *, generator: torch.Generator,
         device: Any, callback: Optional[Callable[[int, Any], None]] = None) -> S.SampleResult:
    """n samples in model space (no inverse scaling)."""
    fn = S.pc_sample if spec.method == "pc" else S.ode_sample
    return fn(model, (int(n), *shape), eps=spec.eps, generator=generator, device=device, dtype=torch.float32,
              callback=callback, **spec.kwargs)

"""One interface for every score: `ScoreModel.score(x, t) ≈ ∇x log q_t(x)`.

Losses, the likelihood, the samplers and the diagnostics only ever see a `ScoreModel`
(docs/contracts.md §2; k-diffusion's one-denoiser convention). `score` must be a pure function
of (x, t) — no hidden randomness besides a network's own dropout — because the derivative module
differentiates it in x and t, forward and reverse mode.

Parameterisations of the original networks (docs/maths.md §3):

- VE (NCSN++): label σ(t); the output *is* the score (`scale_by_sigma` divides by σ inside).
- VP / subVP (DDPM++): label 999·t; score = −output / std(t).
- toy MLP, `param="eps"` (mle_score_ode `toy.py`): label t; the network predicts ε̂ ≈ −z, where
  x_t = mean + std·z, so score = +ε̂ / std(t). Note the sign: toy.py trains ε̂ towards −z and
  divides by std without a minus, whereas Score SDE's VP networks predict +z and negate.
- toy MLP, `param="score"`: label t; the output is the score.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from typing import Any, Callable

import torch
import torch.nn as nn

from .sde import SDE, bcast, make_sde

Tensor = torch.Tensor

PARAMS = ("score", "noise", "eps")


class ScoreModel(ABC):
    """Base class: a time-dependent score s(x, t) for an SDE. Subclasses implement `score`."""

    sde: SDE

    @abstractmethod
    def score(self, x: Tensor, t: Tensor) -> Tensor:
        ...

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self.score(x, t)

    def parameters(self):
        return iter(())


class NetworkScore(ScoreModel):
    """A network wrapped by a parameterisation.

    `param`:
      - "score": score = net(x, label(t))
      - "noise": score = −net(x, label(t)) / std(t)   (Score SDE VP / subVP)
      - "eps":   score = +net(x, label(t)) / std(t)   (toy ε-parameterisation, ε̂ ≈ −z)
    `label`: "sde" uses the SDE's original label (σ(t) for VE, 999·t otherwise); "t" passes t.
    """

    def __init__(self, network: nn.Module, sde: SDE, param: str = "score", label: str = "sde"):
        if param not in PARAMS:
            raise ValueError(f"param must be one of {PARAMS}, got {param!r}")
        if label not in ("sde", "t"):
            raise ValueError(f"label must be 'sde' or 't', got {label!r}")
        self.network = network
        self.sde = sde
        self.param = param
        self.label_kind = label

    def labels(self, t: Tensor) -> Tensor:
        return self.sde.label(t) if self.label_kind == "sde" else t

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        out = self.network(x, self.labels(t))
        if self.param == "score":
            return out
        std = bcast(self.sde.marginal_std(t), out)
        return -out / std if self.param == "noise" else out / std

    def parameters(self):
        return self.network.parameters()

    def train(self, mode: bool = True) -> "NetworkScore":
        self.network.train(mode)
        return self

    def eval(self) -> "NetworkScore":
        return self.train(False)


class FunctionScore(ScoreModel):
    """Wrap a plain callable `fn(x, t) -> score` (closed-form scores, tests)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], sde: SDE):
        self.fn = fn
        self.sde = sde

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.fn(x, t)


def score_model(network: nn.Module, sde: Any, model_cfg: Any) -> NetworkScore:
    """The original parameterisation for a network built from `model_cfg` (contracts.md §1).

    ncsnpp / ddpmpp: VE → output is the score with label σ(t); VP / subVP → −output/std with
    label 999·t. mlp: label t, `param` "eps" (score = ε̂/std) or "score".
    """
    sde = make_sde(sde)
    if model_cfg.kind == "mlp":
        return NetworkScore(network, sde, param="eps" if model_cfg.param == "eps" else "score", label="t")
    if sde.kind == "ve":
        return NetworkScore(network, sde, param="score", label="sde")
    return NetworkScore(network, sde, param="noise", label="sde")

"""Exponential moving average of the trainable parameters, in Score SDE's checkpoint format.

State: ``{"decay", "num_updates", "shadow_params"}`` where ``shadow_params`` is a plain list of
tensors, one per parameter with ``requires_grad=True`` in ``model.parameters()`` order. Parameters
that do not require gradients (NCSN++'s Fourier ``W``) have no shadow, so for a VE NCSN++ shadow
index i belongs to parameter index i + 1.

The decay actually used at update n is ``min(decay, (1 + n) / (10 + n))`` (with num_updates).
"""

from __future__ import annotations

from typing import Iterable, List, Optional

import torch
import torch.nn as nn


def trainable(params: Iterable[torch.Tensor]) -> List[torch.Tensor]:
    return [p for p in params if p.requires_grad]


class EMA:
    def __init__(self, parameters: Iterable[torch.Tensor], decay: float,
                 use_num_updates: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError("EMA decay must be in [0, 1]")
        self.decay = float(decay)
        self.num_updates: Optional[int] = 0 if use_num_updates else None
        self.shadow_params: List[torch.Tensor] = [p.detach().clone() for p in trainable(parameters)]
        self._backup: List[torch.Tensor] = []

    @torch.no_grad()
    def update(self, parameters: Iterable[torch.Tensor]) -> None:
        decay = self.decay
        if self.num_updates is not None:
            self.num_updates += 1
            decay = min(decay, (1 + self.num_updates) / (10 + self.num_updates))
        params = trainable(parameters)
        if len(params) != len(self.shadow_params):
            raise ValueError(f"EMA tracks {len(self.shadow_params)} parameters, got {len(params)}")
        for s, p in zip(self.shadow_params, params):
            s.sub_((1.0 - decay) * (s - p))

    @torch.no_grad()
    def copy_to(self, parameters: Iterable[torch.Tensor]) -> None:
        params = trainable(parameters)
        if len(params) != len(self.shadow_params):
            raise ValueError(f"EMA tracks {len(self.shadow_params)} parameters, got {len(params)}")
        for s, p in zip(self.shadow_params, params):
            if s.shape != p.shape:
                raise ValueError(f"EMA shadow shape {tuple(s.shape)} != parameter {tuple(p.shape)}")
            p.copy_(s)

    @torch.no_grad()
    def store(self, parameters: Iterable[torch.Tensor]) -> None:
        self._backup = [p.detach().clone() for p in parameters]

    @torch.no_grad()
    def restore(self, parameters: Iterable[torch.Tensor]) -> None:
        for b, p in zip(self._backup, parameters):
            p.copy_(b)
        self._backup = []

    def to(self, device=None) -> "EMA":
        self.shadow_params = [s.to(device) for s in self.shadow_params]
        return self

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow_params": self.shadow_params}

    def load_state_dict(self, state: dict) -> None:
        shadows = list(state["shadow_params"])
        if self.shadow_params and len(shadows) != len(self.shadow_params):
            raise ValueError(f"EMA state has {len(shadows)} shadow params, expected "
                             f"{len(self.shadow_params)}")
        for i, (s, ref) in enumerate(zip(shadows, self.shadow_params)):
            if s.shape != ref.shape:
                raise ValueError(f"EMA shadow {i}: shape {tuple(s.shape)} != {tuple(ref.shape)}")
        self.decay = float(state["decay"])
        self.num_updates = state["num_updates"]
        self.shadow_params = [s.to(ref.device) if self.shadow_params else s
                              for s, ref in zip(shadows, self.shadow_params or shadows)]

    @classmethod
    def for_model(cls, model: nn.Module, decay: float) -> "EMA":
        return cls(model.parameters(), decay)

"""The original Score SDE CIFAR-10 networks, named by their config file, as fpdiff configs.

fpdiff recognises which of these a checkpoint holds by building each on the meta device and
comparing state-dict layouts (``fpdiff.checkpoints``). Each entry is written as its difference from
the DSL's defaults — which are these very configs (NCSN++: the VE one, DDPM++: the VP one; authored in
``src/dsl/model.ts``) — so no network setting is stated here a second time. ``test_models`` checks
the entries against the manifests of the original configs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Literal

from ..config import CIFAR10Config, DDPMppConfig, ImageModelConfig, NCSNppConfig

__all__ = ["Architecture", "ARCHITECTURES", "architecture"]


@dataclass(frozen=True)
class Architecture:
    """One original network: the SDE its checkpoints were trained with, its model and data config."""

    sde: Literal["ve", "vp", "subvp"]
    model: ImageModelConfig  # NCSNppConfig or DDPMppConfig
    data: CIFAR10Config

    def with_model(self, **changes: object) -> "Architecture":
        """The same architecture with some model fields changed (e.g. ``nf=8``)."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, **changes))


_UNCENTERED = CIFAR10Config()
_CENTERED = CIFAR10Config(centered=True)
# NCSN++ as the VP / subVP configs use it: positional embedding of 999·t, output not divided by σ
_NCSNPP_VP = NCSNppConfig(embedding_type="positional", scale_by_sigma=False, ema_rate=0.9999)


def _deep(model: ImageModelConfig) -> ImageModelConfig:
    return dataclasses.replace(model, num_res_blocks=8)


#: config name in Score SDE's ``configs/`` → the network it trains
ARCHITECTURES: Dict[str, Architecture] = {
    "ve/cifar10_ncsnpp_continuous": Architecture("ve", NCSNppConfig(), _UNCENTERED),
    "ve/cifar10_ncsnpp_deep_continuous": Architecture("ve", _deep(NCSNppConfig()), _UNCENTERED),
    "vp/cifar10_ddpmpp_continuous": Architecture("vp", DDPMppConfig(), _CENTERED),
    "vp/cifar10_ddpmpp_deep_continuous": Architecture("vp", _deep(DDPMppConfig()), _CENTERED),
    "subvp/cifar10_ddpmpp_continuous": Architecture("subvp", DDPMppConfig(), _CENTERED),
    "subvp/cifar10_ddpmpp_deep_continuous": Architecture("subvp", _deep(DDPMppConfig()), _CENTERED),
    "vp/cifar10_ncsnpp_continuous": Architecture("vp", _NCSNPP_VP, _CENTERED),
    "vp/cifar10_ncsnpp_deep_continuous": Architecture("vp", _deep(_NCSNPP_VP), _CENTERED),
    "subvp/cifar10_ncsnpp_continuous": Architecture("subvp", _NCSNPP_VP, _CENTERED),
    "subvp/cifar10_ncsnpp_deep_continuous": Architecture("subvp", _deep(_NCSNPP_VP), _CENTERED),
}


def architecture(name: str) -> Architecture:
    """One entry of ``ARCHITECTURES``; the KeyError lists the known names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None

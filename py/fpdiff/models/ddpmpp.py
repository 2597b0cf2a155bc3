"""DDPM++: Score SDE's NCSN++ class with the DDPM++ options.

In the original code DDPM++ is not a separate network: its configs use ``model.name = 'ncsnpp'``
with positional embeddings, ``fir = False`` and ``progressive_input = 'none'``. fpdiff keeps that:
one implementation (``ncsnpp.NCSNpp``); ``kind: "ddpmpp"`` only selects these defaults.
"""

from __future__ import annotations

from typing import Any

from ._config import ConfigView
from .ncsnpp import NCSNpp
from .presets import DDPMPP

DDPMPP_DEFAULTS = dict(DDPMPP)


def build_ddpmpp(model_cfg: Any, data_cfg: Any) -> NCSNpp:
    """NCSN++ with DDPM++ defaults for every field ``model_cfg`` leaves out."""
    view = ConfigView(model_cfg, DDPMPP_DEFAULTS)
    full = {k: view.get(k) for k in DDPMPP_DEFAULTS}
    full["kind"] = "ddpmpp"
    return NCSNpp(full, data_cfg)

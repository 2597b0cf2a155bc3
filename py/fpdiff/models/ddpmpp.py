"""DDPM++: Score SDE's NCSN++ class with the DDPM++ options as defaults.

In the original code DDPM++ is not a separate network: its configs use ``model.name = 'ncsnpp'``
with positional embeddings, ``fir = False`` and ``progressive_input = 'none'``, and train on centred
data. ``DDPMpp`` is ``NCSNpp`` with those defaults (the ``vp/cifar10_ddpmpp_continuous`` network);
its modules, state dict and forward pass are NCSN++'s.
"""

from __future__ import annotations

from typing import Any

from .ncsnpp import NCSNpp

# The options in which Score SDE's DDPM++ configs differ from NCSN++'s defaults.
DDPMPP_DEFAULTS: dict[str, Any] = {
    "centered": True,
    "fir": False,
    "progressive_input": "none",
    "embedding_type": "positional",
    "scale_by_sigma": False,
}


class DDPMpp(NCSNpp):
    """NCSN++ with Score SDE's DDPM++ defaults (``DDPMPP_DEFAULTS``: centred data, no FIR, no
    progressive input, positional embedding of 999·t, no 1/σ output scaling); every keyword argument
    is ``NCSNpp``'s, and any of them may still be given."""

    def __init__(self, **kwargs: Any):
        super().__init__(**{**DDPMPP_DEFAULTS, **kwargs})

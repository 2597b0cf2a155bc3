"""Convert any accepted checkpoint into the PyTorch Score SDE format or a plain export.

``to='score_sde'`` writes the training format score_sde_pytorch loads with ``strict=True``; from a
Score SDE or flax file it carries the raw weights, the EMA, the Adam state and the step; from a
plain export the weights become the raw weights and the EMA shadows, with a fresh Adam state.
``to='safetensors' | 'state_dict'`` writes the network's weights (EMA by default) as a flat
state dict. The network comes from the given configs, else from the preset the file matches.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional, Tuple

import torch
import torch.nn as nn

from ..models import EMA, build_network
from .errors import ArchitectureMismatchError
from .load import Checkpoint, load_checkpoint
from .match import describe_matches, known_architectures, layout_of, match_flax_presets, \
    match_presets, with_nf
from .restore import restore
from .save import SavedCheckpoint, checkpoint_state, save_checkpoint, save_state_dict

__all__ = ["matching_presets", "infer_configs", "network_for", "exported_state_dict", "convert",
           "TARGETS"]

TARGETS = ("safetensors", "state_dict", "score_sde")


def matching_presets(ck: Checkpoint) -> list:
    """The presets whose layout the checkpoint has (in flax names for a flax file)."""
    if ck.format == "flax":
        return match_flax_presets({k: tuple(v.shape) for k, v in ck.model.items()})
    return match_presets(layout_of(ck.model))


def infer_configs(ck: Checkpoint) -> Tuple[Any, Any, str]:
    """(model_cfg, data_cfg, preset name) of the first preset whose layout the file has."""
    matches = matching_presets(ck)
    if not matches:
        raise ArchitectureMismatchError(
            f"{ck.path or 'checkpoint'}: cannot tell which network this is — "
            + describe_matches(matches) + "; pass the experiment (model and data config)",
            path=ck.path)
    m = matches[0]
    for name, model_cfg, data_cfg in known_architectures():
        if name == m["preset"]:
            nf = m["overrides"].get("nf")
            return (with_nf(model_cfg, nf) if nf else model_cfg), data_cfg, name
    raise AssertionError("a match names a known architecture")


def network_for(ck: Checkpoint, model_cfg: Any = None, data_cfg: Any = None) -> nn.Module:
    """A freshly built network for ``ck`` (from the given configs, else the matching preset)."""
    if model_cfg is None:
        model_cfg, data_cfg, _ = infer_configs(ck)
    return build_network(model_cfg, data_cfg)


def exported_state_dict(ck: Checkpoint, *, weights: str = "ema", model_cfg: Any = None,
                        data_cfg: Any = None) -> "OrderedDict[str, torch.Tensor]":
    """The network's state dict (no 'module.' prefix) with the raw or the EMA weights."""
    net = network_for(ck, model_cfg, data_cfg)
    restore(net, ck, weights=weights)
    return OrderedDict((k, v.detach().cpu().contiguous()) for k, v in net.state_dict().items())


def _ema_rate(model_cfg: Any) -> float:
    return float(model_cfg["ema_rate"] if isinstance(model_cfg, dict) else
                 getattr(model_cfg, "ema_rate", 0.9999))


def convert(src: str, dst: str, *, to: str, weights: str = "ema", model_cfg: Any = None,
            data_cfg: Any = None, step: Optional[int] = None) -> SavedCheckpoint:
    """Convert ``src`` (any accepted format) into ``dst`` in format ``to`` (see the module)."""
    if to not in TARGETS:
        raise ValueError("to must be 'safetensors', 'state_dict' or 'score_sde'")
    ck = load_checkpoint(src)
    if to in ("safetensors", "state_dict"):
        if ck.format == "state_dict":
            weights = "model"
        sd = exported_state_dict(ck, weights=weights, model_cfg=model_cfg, data_cfg=data_cfg)
        meta = {"source_sha256": ck.sha256 or "", "source_format": ck.format, "weights": weights}
        if ck.step is not None or step is not None:
            meta["step"] = str(step if step is not None else ck.step)
        return save_state_dict(dst, sd, fmt=to, metadata=meta)
    if model_cfg is None:
        model_cfg, data_cfg, _ = infer_configs(ck)
    net = build_network(model_cfg, data_cfg)
    if ck.format in ("score_sde", "flax"):
        # the training format already: carry the raw weights, EMA, optimiser and step over
        ema = EMA(net.parameters(), decay=float(ck.ema["decay"])) if ck.ema is not None else None
        opt = torch.optim.Adam(net.parameters(), lr=2e-4) if ck.optimizer is not None else None
        restore(net, ck, weights="model", ema=ema, optimizer=opt)
        return save_checkpoint(dst, checkpoint_state(net, opt, ema, ck.step or 0))
    restore(net, ck, weights="model")
    return save_checkpoint(dst, checkpoint_state(
        net, None, None, step if step is not None else (ck.step or 0), ema_decay=_ema_rate(model_cfg)))

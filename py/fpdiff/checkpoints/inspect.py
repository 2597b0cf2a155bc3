"""A JSON-ready summary of any accepted checkpoint, without building a network."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Dict, Optional

import torch

from .convert import matching_presets
from .load import Checkpoint, load_checkpoint, plain_numbers

__all__ = ["inspect_checkpoint"]


def _torch_optimizer(opt: Mapping) -> dict:
    groups = opt.get("param_groups", [])
    state = opt.get("state", {})
    entry_keys = sorted({k for st in state.values() if isinstance(st, Mapping) for k in st})
    g0 = groups[0] if groups else {}
    steps = [st.get("step") for st in state.values() if isinstance(st, Mapping) and "step" in st]
    step_type = None
    if steps:
        step_type = "tensor" if torch.is_tensor(steps[0]) else type(steps[0]).__name__
    return {
        "kind": "Adam" if {"exp_avg", "exp_avg_sq"} <= set(entry_keys) else "unknown",
        "param_groups": len(groups),
        "parameters": sum(len(g.get("params", [])) for g in groups),
        "state_entries": len(state),
        "lr": plain_numbers(g0.get("lr")),
        "lr_type": type(g0.get("lr")).__module__ + "." + type(g0.get("lr")).__name__
        if "lr" in g0 else None,
        "betas": list(plain_numbers(g0.get("betas"))) if g0.get("betas") is not None else None,
        "eps": plain_numbers(g0.get("eps")),
        "weight_decay": plain_numbers(g0.get("weight_decay")),
        "amsgrad": plain_numbers(g0.get("amsgrad")),
        "adam_step_type": step_type,
    }


def _flax_optimizer(opt: Mapping, leaves: int) -> dict:
    # flax.optim's Adam keeps one step for all leaves and no hyper-parameters in the state
    return {"kind": "Adam", "param_groups": 1, "parameters": leaves, "state_entries": leaves,
            "lr": float(opt["lr"]), "lr_type": "float32 (flax State.lr)", "betas": None,
            "eps": None, "weight_decay": None, "amsgrad": None, "adam_step_type": "int (one for all)"}


def _optimizer_summary(ck: Checkpoint) -> Optional[dict]:
    if ck.optimizer is None:
        return None
    if ck.format == "flax":
        return _flax_optimizer(ck.optimizer, len(ck.model))
    return _torch_optimizer(ck.optimizer)


def _ema_summary(ck: Checkpoint) -> Optional[dict]:
    if ck.ema is None:
        return None
    tensors = list(ck.ema["params"].values()) if ck.format == "flax" else ck.ema["shadow_params"]
    return {"decay": plain_numbers(ck.ema.get("decay")), "num_updates": plain_numbers(ck.ema.get("num_updates")),
            "shadow_params": len(tensors), "shadow_elements": int(sum(t.numel() for t in tensors))}


def inspect_checkpoint(path: str) -> dict:
    """Format, step, sizes, EMA, optimiser, matching presets and digest of a checkpoint file
    (or of a work directory's newest snapshot)."""
    ck = load_checkpoint(path)
    dtypes: Dict[str, int] = {}
    for v in ck.model.values():
        dt = str(v.dtype).replace("torch.", "")
        dtypes[dt] = dtypes.get(dt, 0) + 1
    return {
        "path": os.path.abspath(ck.path or path),
        "bytes": ck.bytes,
        "sha256": ck.sha256,
        "container": ck.file.format if ck.file else None,
        "format": ck.format,
        "step": ck.step,
        "tensors": len(ck.model),
        "parameter_count": ck.num_parameters,
        "dtypes": dtypes,
        "buffers": [k for k in ck.model if k == "sigmas"],
        "ema": _ema_summary(ck),
        "optimizer": _optimizer_summary(ck),
        "adam_step": ck.optimizer["step"] if ck.format == "flax" and ck.optimizer else None,
        "extra_keys": ck.extra_keys,
        "matching_presets": matching_presets(ck),
        "globals": ck.file.globals if ck.file else [],
    }

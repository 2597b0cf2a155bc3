"""Put a checkpoint into a network (strictly), an EMA and an optimiser; flax states first mapped.

PyTorch files restore as they are. A flax state is first turned into the PyTorch Score SDE form
*for the given network* (:func:`flax_to_torch`): the network fixes the call order the flax names
count in. Every flax leaf must land on a parameter and every parameter must be filled, or the
error lists the missing / unexpected flax leaves and the preset(s) the file does match. Then:

* weights: ``optimizer.target``; ``sigmas`` computed from the config (the network's own buffer);
* EMA: ``params_ema`` over the trainable parameters, decay ``ema_rate``, ``num_updates = None`` —
  the JAX code averages at the constant rate, which is what score_sde_pytorch's EMA does without
  an update count. The frozen Fourier ``W`` has no shadow in the PyTorch format; if the file's
  EMA copy of it differs from the raw one, evaluation with ``weights='ema'`` uses the EMA copy
  here, but a PyTorch file written from this state cannot keep it (a warning says so);
* Adam: ``grad_ema`` → ``exp_avg``, ``grad_sq_ema`` → ``exp_avg_sq``, flax's one step count for
  every parameter, ``lr`` as stored (score_flow stores ``optim.lr``; warm-up is recomputed from
  the step). Parameters that never receive a gradient (the Fourier ``W``) get no Adam state, as
  in torch; their flax moments are zero (a warning says if not). β₁, β₂, ε are not in the file:
  the optimiser's own (the experiment's) are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
import torch.nn as nn

from ..models import build_network
from .errors import ArchitectureMismatchError, CheckpointError
from .flax_map import COMPUTED_BUFFERS, flax_names, to_torch_tensor
from .load import Checkpoint, load_checkpoint, plain_numbers
from .match import check_layout, match_flax_presets, mismatch_error, unwrap

__all__ = ["RestoreInfo", "restore", "copy_ema_to", "load_network", "flax_to_torch",
           "optimizer_state_for_loading", "trainable"]


def trainable(model: nn.Module) -> List[nn.Parameter]:
    return [p for p in unwrap(model).parameters() if p.requires_grad]


# ----------------------------------------------------------------------------------------------
# flax → the PyTorch form, for one network

def flax_to_torch(ck: Checkpoint, model: nn.Module) -> Checkpoint:
    """The flax checkpoint ``ck`` in the PyTorch Score SDE form for ``model`` (strict); any other
    checkpoint unchanged. The result has ``format='score_sde'`` and ``origin='flax'``."""
    if ck.format != "flax":
        return ck
    net = unwrap(model)
    names = flax_names(net)
    by_path = {leaf.path: (key, leaf) for key, leaf in names.items()}
    missing = [p for p in by_path if p not in ck.model]
    unexpected = [p for p in ck.model if p not in by_path]
    shapes = [(p, tuple(ck.model[p].shape), by_path[p][1].shape) for p in by_path
              if p in ck.model and tuple(ck.model[p].shape) != by_path[p][1].shape]
    if missing or unexpected or shapes:
        raise mismatch_error(net, ck.path, missing, unexpected, shapes,
                             match_flax_presets({k: tuple(v.shape) for k, v in ck.model.items()}),
                             what="flax leaf")

    own = net.state_dict()
    warnings: List[str] = list(ck.warnings)

    def convert(tree: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for key, value in own.items():
            if key in COMPUTED_BUFFERS:
                out[key] = value.detach().cpu().clone()
            else:
                leaf = names[key]
                out[key] = to_torch_tensor(tree[leaf.path], leaf.transform).to(value.dtype)
        return out

    model_sd = convert(ck.model)
    ema_sd = convert(ck.ema["params"])
    params = list(net.named_parameters())
    shadows = [ema_sd[n] for n, p in params if p.requires_grad]
    frozen = {n: ema_sd[n] for n, p in params
              if not p.requires_grad and not torch.equal(ema_sd[n], model_sd[n])}
    if frozen:
        warnings.append(f"the EMA copy of the frozen parameter(s) {', '.join(frozen)} differs from "
                        "the raw weights; evaluation with the EMA weights uses the EMA copy, but the "
                        "PyTorch Score SDE format has no place for it")
    ema = {"decay": float(ck.ema["decay"]), "num_updates": None, "shadow_params": shadows,
           "frozen": frozen}

    opt = ck.optimizer
    m_sd, v_sd = convert(opt["grad_ema"]), convert(opt["grad_sq_ema"])
    group = torch.optim.Adam([torch.zeros(1)], lr=float(opt["lr"])).state_dict()["param_groups"][0]
    group = dict(group, params=list(range(len(params))))
    state = {}
    for i, (n, p) in enumerate(params):
        if p.requires_grad:
            state[i] = {"step": torch.tensor(float(opt["step"])), "exp_avg": m_sd[n],
                        "exp_avg_sq": v_sd[n]}
        elif m_sd[n].abs().max() > 0 or v_sd[n].abs().max() > 0:
            warnings.append(f"Adam moments of the frozen parameter {n} are not zero; torch keeps no "
                            "state for a parameter without gradients, so they are dropped")
    return Checkpoint(ck.path, "score_sde", model_sd, ema, {"state": state, "param_groups": [group]},
                      ck.step, ck.sha256, ck.bytes, ck.file, list(ck.extra_keys), warnings,
                      origin="flax")


# ----------------------------------------------------------------------------------------------
# checks and restoring

def _check_ema(model: nn.Module, ck: Checkpoint) -> None:
    if ck.ema is None:
        raise CheckpointError(f"{ck.path or 'checkpoint'} has no EMA weights "
                              "(use weights='model')", path=ck.path)
    params = trainable(model)
    shadows = ck.ema["shadow_params"]
    names = [n for n, p in unwrap(model).named_parameters() if p.requires_grad]
    if len(shadows) != len(params):
        raise ArchitectureMismatchError(
            f"{ck.path or 'checkpoint'}: EMA holds {len(shadows)} shadow parameters but the network "
            f"has {len(params)} trainable parameters", path=ck.path)
    for i, (s, p) in enumerate(zip(shadows, params)):
        if tuple(s.shape) != tuple(p.shape):
            raise ArchitectureMismatchError(
                f"{ck.path or 'checkpoint'}: EMA shadow #{i} ({names[i]}) has shape "
                f"{list(s.shape)}, the parameter {list(p.shape)}", path=ck.path)


@torch.no_grad()
def copy_ema_to(model: nn.Module, ck: Checkpoint) -> None:
    """Overwrite the trainable parameters with the EMA shadows (and a flax file's frozen EMA copies)."""
    ck = flax_to_torch(ck, model)
    _check_ema(model, ck)
    for s, p in zip(ck.ema["shadow_params"], trainable(model)):
        p.copy_(s)
    params = dict(unwrap(model).named_parameters())
    for name, value in (ck.ema.get("frozen") or {}).items():
        params[name].copy_(value)


def _check_optimizer(model: nn.Module, opt_state: Mapping, path: Optional[str]) -> None:
    params = list(unwrap(model).parameters())
    groups = opt_state.get("param_groups", [])
    n = sum(len(g.get("params", [])) for g in groups)
    if n != len(params):
        raise ArchitectureMismatchError(
            f"{path or 'checkpoint'}: optimiser state covers {n} parameters, the network has "
            f"{len(params)}", path=path)
    index = [i for g in groups for i in g["params"]]
    by_index = dict(zip(index, params))
    for i, st in opt_state.get("state", {}).items():
        p = by_index.get(i)
        if p is None:
            raise ArchitectureMismatchError(f"{path or 'checkpoint'}: optimiser state for unknown "
                                            f"parameter index {i}", path=path)
        for k in ("exp_avg", "exp_avg_sq"):
            t = st.get(k) if isinstance(st, Mapping) else None
            if torch.is_tensor(t) and tuple(t.shape) != tuple(p.shape):
                raise ArchitectureMismatchError(
                    f"{path or 'checkpoint'}: optimiser {k} for parameter {i} has shape "
                    f"{list(t.shape)}, the parameter {list(p.shape)}", path=path)


def optimizer_state_for_loading(opt_state: Mapping) -> dict:
    """Optimiser state with NumPy scalars (the original's warm-up ``lr``) made Python numbers."""
    return {"state": opt_state["state"],
            "param_groups": [plain_numbers(dict(g)) for g in opt_state["param_groups"]]}


@dataclass
class RestoreInfo:
    weights: str
    step: Optional[int]
    ema_loaded: bool
    optimizer_loaded: bool
    warnings: Tuple[str, ...] = ()


def restore(model: nn.Module, ck: Checkpoint, *, weights: str = "ema",
            optimizer: Optional[torch.optim.Optimizer] = None, ema: Any = None) -> RestoreInfo:
    """Put a checkpoint into ``model`` (strict) and optionally an optimiser and an EMA object.

    ``weights='ema'`` (evaluation) loads the raw weights, then overwrites the trainable parameters
    with the EMA shadows; ``'model'`` keeps the raw training weights. ``ema`` is any object with
    ``load_state_dict`` (``fpdiff.models.EMA``); ``optimizer`` a torch optimiser over
    ``model.parameters()`` in order (as the original builds it). A flax checkpoint is mapped onto
    ``model`` first (:func:`flax_to_torch`); for Adam only its moments and step are taken — the
    optimiser keeps its own hyper-parameters.
    """
    if weights not in ("ema", "model"):
        raise ValueError("weights must be 'ema' or 'model'")
    ck = flax_to_torch(ck, model)
    check_layout(model, ck)
    if weights == "ema" or ema is not None:
        _check_ema(model, ck)
    if optimizer is not None:
        if ck.optimizer is None:
            raise CheckpointError(f"{ck.path or 'checkpoint'} has no optimiser state", path=ck.path)
        _check_optimizer(model, ck.optimizer, ck.path)
    net = unwrap(model)
    net.load_state_dict(ck.model, strict=True)
    if weights == "ema":
        copy_ema_to(net, ck)
    if ema is not None:
        ema.load_state_dict({"decay": ck.ema["decay"], "num_updates": ck.ema["num_updates"],
                             "shadow_params": [s.detach().clone() for s in ck.ema["shadow_params"]]})
        if hasattr(ema, "to"):
            ema.to(next(net.parameters()).device)
    if optimizer is not None:
        state = optimizer_state_for_loading(ck.optimizer)
        if ck.origin == "flax":   # the file has no betas / eps: keep the optimiser's own
            own = optimizer.state_dict()["param_groups"]
            state["param_groups"] = [dict(g, lr=state["param_groups"][0]["lr"]) for g in own]
        optimizer.load_state_dict(state)
    return RestoreInfo(weights, ck.step, ema is not None, optimizer is not None, tuple(ck.warnings))


def load_network(path: str, model_cfg: Any, data_cfg: Any, *, weights: str = "ema",
                 map_location: Any = "cpu") -> Tuple[nn.Module, Checkpoint]:
    """Build the network for the configs, restore the file into it, set eval mode."""
    ck = load_checkpoint(path, map_location="cpu")
    net = build_network(model_cfg, data_cfg)
    restore(net, ck, weights=weights)
    net.eval()
    return net.to(map_location), ck

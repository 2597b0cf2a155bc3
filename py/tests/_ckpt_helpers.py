"""Shared helpers for the model / checkpoint tests: reference fixtures, configs, labels."""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
from typing import Any, Dict, List, Tuple

import pytest
import torch

from fpdiff import config as C
from fpdiff.config import CIFAR10Config, NCSNppConfig

# The original-format fixtures (and their expected outputs) travel with the repository, so a clean
# clone tests against them; FPD_REFERENCE_CHECKPOINTS points elsewhere if wanted.
REF_DIR = os.environ.get(
    "FPD_REFERENCE_CHECKPOINTS",
    os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "reference"))

FIXTURES = ["ve_ncsnpp_small_seed0", "vp_ddpmpp_small_seed0"]


def require_reference() -> str:
    if not os.path.isdir(REF_DIR):
        raise FileNotFoundError(f"reference checkpoints not found at {REF_DIR} (they ship in test/fixtures/reference)")
    return REF_DIR


def fixture_meta(name: str) -> dict:
    with open(os.path.join(require_reference(), f"{name}_io.json")) as fh:
        return json.load(fh)


def fixture_paths(name: str) -> Tuple[str, str]:
    d = require_reference()
    return os.path.join(d, f"{name}.pth"), os.path.join(d, f"{name}_io.pt")


def configs_of_original(config_model: dict, config_data: dict) -> Tuple[NCSNppConfig, CIFAR10Config]:
    """fpdiff's config dataclasses for a Score SDE ``config.model`` / ``config.data`` (JSON dicts).

    Every ``config.model`` field has the same name in ``NCSNppConfig`` (the original names the class
    'ncsnpp' for DDPM++ too); the data set's name is the config's kind.
    """
    def plain(v):
        return tuple(v) if isinstance(v, list) else v

    model = NCSNppConfig(**{k: plain(v) for k, v in config_model.items() if k != "name"})
    data = CIFAR10Config(**{k: plain(v) for k, v in config_data.items() if k != "dataset"})
    return model, data


def fixture_configs(name: str) -> Tuple[NCSNppConfig, CIFAR10Config]:
    """(model_cfg, data_cfg) of a fixture: its JSON's Score SDE config as fpdiff dataclasses."""
    meta = fixture_meta(name)
    return configs_of_original(meta["config_model"], meta["config_data"])


def manifests() -> List[str]:
    return sorted(glob.glob(os.path.join(require_reference(), "manifest_*.json")))


def load_manifest(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# --- the score rules the fixtures state (used only if fpdiff.score / fpdiff.sde are missing) ----

def labels_by_rule(meta: dict, t: torch.Tensor) -> torch.Tensor:
    sde = meta["sde"]
    if sde["class"] == "VESDE":
        return sde["sigma_min"] * (sde["sigma_max"] / sde["sigma_min"]) ** t
    return t * 999


def score_by_rule(meta: dict, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    sde = meta["sde"]
    if sde["class"] == "VESDE":
        return out
    b0, b1 = sde["beta_min"], sde["beta_max"]
    log_mean = -0.25 * t ** 2 * (b1 - b0) - 0.5 * t * b0
    std = torch.sqrt(1.0 - torch.exp(2.0 * log_mean))
    return -out / std[:, None, None, None]


def sde_cfg(meta: dict) -> C.SDEConfig:
    sde = meta["sde"]
    if sde["class"] == "VESDE":
        return C.VESDEConfig(sigma_min=sde["sigma_min"], sigma_max=sde["sigma_max"], N=sde["N"])
    cls = C.VPSDEConfig if sde["class"] == "VPSDE" else C.SubVPSDEConfig
    return cls(beta_min=sde["beta_min"], beta_max=sde["beta_max"], N=sde["N"])


# --- the original Score SDE network, imported read-only for comparisons ------------------------

ORIG_DIR = os.environ.get("FPD_ORIGINAL_SCORE_SDE", "/work/orig/yang-song+score_sde_pytorch")
_ORIGINAL = {}


def original_ncsnpp_class():
    """Score SDE's ``NCSNpp`` class, or skip the test if the original code is not available.

    Its ``op`` package compiles a CUDA extension at import; a stand-in ``op`` module supplies
    fpdiff's plain-PyTorch ``upfirdn2d`` (same signature, checked against SciPy in test_models),
    so everything else that runs is the original code.
    """
    if "cls" in _ORIGINAL:
        return _ORIGINAL["cls"]
    if not os.path.isfile(os.path.join(ORIG_DIR, "models", "ncsnpp.py")):
        pytest.skip(f"original Score SDE code not found at {ORIG_DIR}")
    import importlib
    import sys
    import types

    from fpdiff.models.fir import upfirdn2d

    saved = {k: sys.modules.get(k) for k in ("op", "models", "sde_lib")}
    stub = types.ModuleType("op")
    stub.upfirdn2d = upfirdn2d
    sys.modules["op"] = stub
    for k in ("models", "sde_lib"):
        sys.modules.pop(k, None)
    sys.path.insert(0, ORIG_DIR)
    try:
        mod = importlib.import_module("models.ncsnpp")
        _ORIGINAL["cls"] = mod.NCSNpp
    finally:
        sys.path.remove(ORIG_DIR)
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")] + ["op", "sde_lib"]:
            sys.modules.pop(k, None)
        for k, v in saved.items():
            if v is not None:
                sys.modules[k] = v
    return _ORIGINAL["cls"]


def original_config(model_cfg: Any, data_cfg: Any):
    """The ml_collections-like object the original constructor reads."""
    from types import SimpleNamespace
    if dataclasses.is_dataclass(model_cfg):
        model_cfg, data_cfg = dataclasses.asdict(model_cfg), dataclasses.asdict(data_cfg)
    model = SimpleNamespace(**{k: (list(v) if isinstance(v, tuple) else v)
                               for k, v in model_cfg.items() if k != "kind"})
    model.name = "ncsnpp"
    data = SimpleNamespace(image_size=32, num_channels=3, centered=False)
    for k, v in data_cfg.items():
        setattr(data, k, v)
    return SimpleNamespace(model=model, data=data, training=SimpleNamespace(continuous=True))

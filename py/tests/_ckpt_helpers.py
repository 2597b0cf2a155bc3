"""Shared helpers for the model / checkpoint tests: reference fixtures, configs, labels."""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Dict, List, Tuple

import pytest
import torch

REF_DIR = os.environ.get(
    "FPD_REFERENCE_CHECKPOINTS",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference", "checkpoints"))
if not os.path.isdir(REF_DIR):
    REF_DIR = "/work/shared/reference/checkpoints"

FIXTURES = ["ve_ncsnpp_small_seed0", "vp_ddpmpp_small_seed0"]


def require_reference() -> str:
    if not os.path.isdir(REF_DIR):
        pytest.skip(f"reference checkpoints not found at {REF_DIR}")
    return REF_DIR


def fixture_meta(name: str) -> dict:
    with open(os.path.join(require_reference(), f"{name}_io.json")) as fh:
        return json.load(fh)


def fixture_paths(name: str) -> Tuple[str, str]:
    d = require_reference()
    return os.path.join(d, f"{name}.pth"), os.path.join(d, f"{name}_io.pt")


def fixture_configs(name: str) -> Tuple[dict, dict]:
    """(model_cfg, data_cfg) of a fixture: its JSON's Score SDE config with ``kind`` added."""
    meta = fixture_meta(name)
    model = dict(meta["config_model"])
    model["kind"] = "ncsnpp"          # the original config name; DDPM++ is the same class
    return model, dict(meta["config_data"])


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


def sde_cfg(meta: dict) -> Dict:
    sde = meta["sde"]
    if sde["class"] == "VESDE":
        return {"kind": "ve", "sigma_min": sde["sigma_min"], "sigma_max": sde["sigma_max"], "N": sde["N"]}
    kind = "vp" if sde["class"] == "VPSDE" else "subvp"
    return {"kind": kind, "beta_min": sde["beta_min"], "beta_max": sde["beta_max"], "N": sde["N"]}

"""Odd scalar fields in a checkpoint (issue 11, item 12): refused at load, naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fpdiff import checkpoints as C


def _save(tmp_path, **fields) -> str:
    p = str(tmp_path / "ck.pth")
    torch.save({"model": {"w": torch.zeros(1)}, **fields}, p)
    return p


@pytest.mark.parametrize("step,why", [
    ([[[[1]]]], "a number is expected, got a list"),
    (2 ** 70, "is beyond any training run"),
    ("12", "a number is expected, got a str"),
    (-5, "must not be negative, got -5"),
    (1.5, "a whole number is expected, got 1.5"),
    (math.nan, "a whole number is expected, got nan"),
    (True, "a number is expected, got a bool"),
    (torch.tensor([1, 2]), "a number is expected, got an array of shape [2]"),
])
def test_odd_steps_are_refused_naming_the_field(tmp_path, step, why):
    with pytest.raises(C.CorruptCheckpointError) as ei:
        C.load_checkpoint(_save(tmp_path, step=step))
    assert "field 'step' is not a step" in str(ei.value) and why in str(ei.value)
    assert ei.value.to_dict()["field"] == "step"


@pytest.mark.parametrize("step", [0, 7, np.int64(9), torch.tensor(11), 12.0, np.float64(3)])
def test_ordinary_steps_load(tmp_path, step):
    assert C.load_checkpoint(_save(tmp_path, step=step)).step == int(step)


def test_odd_ema_fields_are_refused_naming_the_field(tmp_path):
    ema = {"decay": 1.5, "num_updates": 3, "shadow_params": [torch.zeros(1)]}
    with pytest.raises(C.CorruptCheckpointError, match="field 'ema.decay'"):
        C.load_checkpoint(_save(tmp_path, ema=ema, step=1))
    ema = {"decay": 0.999, "num_updates": [1], "shadow_params": [torch.zeros(1)]}
    with pytest.raises(C.CorruptCheckpointError, match="field 'ema.num_updates'"):
        C.load_checkpoint(_save(tmp_path, ema=ema, step=1))
    ema = {"decay": 0.999, "num_updates": None, "shadow_params": [torch.zeros(1)]}
    assert C.load_checkpoint(_save(tmp_path, ema=ema, step=1)).ema["num_updates"] is None

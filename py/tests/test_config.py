"""fpdiff.config / fpdiff.schema: the experiment from the wire, validated against the JSON Schema
generated from the zod schemas and rebuilt as the generated dataclasses.

The presets and the invalid cases come from the TypeScript side's fixtures (test/dsl/fixtures/:
presets.json is written from configs/ and checked fresh by test/dsl/experiment.test.ts; cases.json
is shared by both languages and says, per case, who refuses it on the worker's side).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fpdiff import config as C

FIXTURES = Path(__file__).resolve().parents[2] / "test" / "dsl" / "fixtures"
PRESETS: dict = json.loads((FIXTURES / "presets.json").read_text())
CASES: dict = json.loads((FIXTURES / "cases.json").read_text())


def split_path(path: str) -> list:
    out: list = []
    for token in path.split("."):
        m = re.fullmatch(r"([^\[]*)((?:\[\d+\])*)", token)
        assert m
        if m.group(1):
            out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


def edited(base: dict, edits: list) -> dict:
    root = copy.deepcopy(base)
    for path, value in edits:
        segs = split_path(path)
        node = root
        for s in segs[:-1]:
            node = node[s]
        if isinstance(value, dict) and value.get("$delete"):
            del node[segs[-1]]
        elif isinstance(node, list) and segs[-1] == len(node):
            node.append(value)
        else:
            node[segs[-1]] = value
    return root


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_rebuilds_and_returns_unchanged(name):
    raw = PRESETS[name]
    exp = C.experiment_from_wire(raw)
    assert isinstance(exp, C.ExperimentConfig)
    assert C.to_wire(exp) == raw
    assert C.experiment_from_wire(C.to_wire(exp)) == exp


def test_dataclasses_are_frozen_snake_case_and_typed():
    exp = C.experiment_from_wire(PRESETS["fp/ve_cifar10_reference"])
    assert isinstance(exp.sde, C.VESDEConfig)
    assert exp.sde.sigma_max == 50.0 and isinstance(exp.sde.sigma_max, float)  # an int on the wire
    assert exp.sde.N == 1000 and isinstance(exp.sde.N, int)
    assert isinstance(exp.model, C.NCSNppConfig)
    assert exp.model.ch_mult == (1, 2, 2, 2) and exp.model.num_res_blocks == 4
    assert exp.model.fir_kernel == (1, 3, 3, 1)
    assert exp.training.n_iters == 1300001 and exp.training.batch_size == 48
    dsm, fpe = exp.loss.terms
    assert isinstance(dsm, C.DSMTerm) and dsm.weighting == "likelihood" and dsm.reduce == "sum"
    assert isinstance(fpe, C.ScoreFPETerm) and fpe.alpha == 0.15 and fpe.m == 2.0
    assert isinstance(fpe.dt, C.FiniteDifference) and fpe.dt.finite_difference.hs == 1e-3
    assert isinstance(exp.sampling, C.PCSamplingConfig) and exp.sampling.N == 1000 and exp.sampling.eps == 1e-5
    assert exp.eval.bpd.dequantize is True and exp.eval.bpd.divergence == "hutchinson"
    assert C.data_dim(exp.data) == 3072
    assert exp.data.image_size == 32 and isinstance(exp.data.image_size, int)  # a number literal stays an int
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.sde.sigma_min = 1.0  # type: ignore[misc]
    assert C.experiment_from_wire(PRESETS["highorder/ve_cifar10_order3"]).loss.terms[1].parts == ("frobenius", "trace")
    toy = C.experiment_from_wire(PRESETS["toy/mog1d_vp_order2_fpe"])
    assert isinstance(toy.model, C.MLPConfig) and toy.model.time_hidden == (128, 128)
    assert toy.data.dim == 1 and toy.eval.bpd.divergence == "exact" and toy.eval.bpd.dequantize is False
    assert toy.loss.terms[2].dt == "autodiff"


def test_generated_defaults_are_the_dsl_defaults():
    """Fields left out on the wire take the zod defaults (the generated dataclasses carry them)."""
    fp = copy.deepcopy(PRESETS["fp/vp_cifar10"])
    fp["loss"]["terms"][1] = {"kind": "scoreFpe"}  # every field at its default
    assert C.to_wire(C.experiment_from_wire(fp)) == PRESETS["fp/vp_cifar10"]
    ho = copy.deepcopy(PRESETS["highorder/ve_cifar10_order2"])
    ho["loss"]["terms"][1] = {"kind": "highOrder", "order": 2}
    assert C.to_wire(C.experiment_from_wire(ho)) == PRESETS["highorder/ve_cifar10_order2"]
    # a notebook builds the same objects with plain keywords
    assert C.ScoreFPETerm() == C.experiment_from_wire(PRESETS["fp/vp_cifar10"]).loss.terms[1]
    assert C.DSMTerm().reduce == "sum" and C.ScoreFPETerm().div == "hutchinson"


def test_resolved_fields_are_required():
    """What TypeScript resolves from other sections must be on the wire: Python has no rule for it."""
    for path in ("sampling", "sampling.N", "sampling.eps", "eval.bpd.divergence", "eval.bpd.dequantize"):
        with pytest.raises(C.ConfigError) as info:
            C.experiment_from_wire(edited(PRESETS["ve/cifar10_ncsnpp_continuous"], [[path, {"$delete": True}]]))
        assert info.value.path == path and info.value.message == "required"
    with pytest.raises(C.ConfigError) as info:
        C.experiment_from_wire(edited(PRESETS["toy/checkerboard_ve_dsm"], [["data.dim", {"$delete": True}]]))
    assert info.value.path == "data.dim"


SCHEMA_CASES = [c for c in CASES["invalid"] if c["python"] == "schema"]
GUARD_CASES = [c for c in CASES["invalid"] if c["python"] not in ("schema", "ts")]
TS_CASES = [c for c in CASES["invalid"] if c["python"] == "ts"]


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[c["name"] for c in SCHEMA_CASES])
def test_the_schema_refuses_malformed_experiments_naming_the_field(case):
    raw = edited(PRESETS[case["base"]], case["edits"])
    with pytest.raises(C.ConfigError) as info:
        C.experiment_from_wire(raw)
    err = info.value
    paths = [p for p, _ in err.errors]
    assert case["path"] in paths
    assert err.path == paths[0] and err.path in str(err)
    assert isinstance(err, ValueError)


def _guard(name: str, exp: C.ExperimentConfig) -> None:
    """Runs the computation whose guard the case names."""
    from fpdiff.losses import build_loss
    from fpdiff.models import build_network
    from fpdiff.sampling import pc_sample
    from fpdiff.sde import make_sde
    from fpdiff.toys import sample_toy

    if name == "make_sde":
        make_sde(exp.sde)
    elif name == "build_network":
        build_network(exp.model, exp.data)
    elif name == "build_loss":
        build_loss(exp.loss)
    elif name == "sample_toy":
        sample_toy(exp.data.dataset, 4, dim=exp.data.dim, generator=torch.Generator().manual_seed(0))
    elif name == "pc_sample":
        pc_sample(None, (2, 1), predictor=exp.sampling.predictor, corrector=exp.sampling.corrector)
    else:
        raise AssertionError(f"no guard called {name}")


@pytest.mark.parametrize("case", GUARD_CASES, ids=[c["name"] for c in GUARD_CASES])
def test_rules_the_numerics_rely_on_are_guarded_where_they_compute(case):
    exp = C.experiment_from_wire(edited(PRESETS[case["base"]], case["edits"]))  # well-formed on the wire
    with pytest.raises(ValueError):
        _guard(case["python"], exp)


@pytest.mark.parametrize("case", TS_CASES, ids=[c["name"] for c in TS_CASES])
def test_rules_of_intent_are_typescripts_alone(case):
    """Well-formed and computable as written: the worker decodes it (TypeScript refuses to send it)."""
    C.experiment_from_wire(edited(PRESETS[case["base"]], case["edits"]))


def test_types_are_checked_strictly():
    base = PRESETS["ve/cifar10_ncsnpp_continuous"]
    # ints are accepted where floats are expected, integral floats where ints are
    ok = C.experiment_from_wire(edited(base, [["sde.sigmaMax", 80], ["model.sigmaMax", 80], ["training.batchSize", 64.0]]))
    assert ok.sde.sigma_max == 80.0 and ok.training.batch_size == 64
    for path, value in [
        ("training.batchSize", True),  # a bool is not a number
        ("sde.sigmaMax", float("nan")),
        ("sde.sigmaMax", "50"),
        ("model.chMult", "1,2,2"),
        ("loss.terms", {"0": {"kind": "dsm"}}),
        ("data", ["cifar10"]),
        ("sde.kind", ["ve"]),
    ]:
        with pytest.raises(C.ConfigError) as info:
            C.experiment_from_wire(edited(base, [[path, value]]))
        assert info.value.path.startswith(path), (path, info.value.errors)
    with pytest.raises(C.ConfigError) as info:
        C.experiment_from_wire([base])
    assert info.value.path == "" and "object" in info.value.message


def test_all_problems_are_reported():
    raw = edited(PRESETS["ve/cifar10_ncsnpp_continuous"], [["model.nf", "x"], ["model.typo", 1], ["training.batchSize", 0]])
    with pytest.raises(C.ConfigError) as info:
        C.experiment_from_wire(raw)
    assert sorted(p for p, _ in info.value.errors) == ["model.nf", "model.typo", "training.batchSize"]
    assert "3 problems" in str(info.value)


def test_command_line_entry_point():
    bad = edited(PRESETS["fp/ve_cifar10"], [["loss.terms[1].alpha", -1]])
    out = subprocess.run(
        [sys.executable, "-m", "fpdiff.config"],
        input=json.dumps([PRESETS["fp/ve_cifar10"], bad]),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(C.__file__).resolve().parents[1],
    )
    good_answer, bad_answer = json.loads(out.stdout)
    assert good_answer == {"ok": True, "experiment": PRESETS["fp/ve_cifar10"]}
    assert bad_answer["ok"] is False and bad_answer["errors"][0]["path"] == "loss.terms[1].alpha"


def test_op_args_are_validated_before_the_handler_runs():
    from fpdiff.ops import REGISTRY, OpError, load_all

    load_all()
    spec = REGISTRY["config.validate"]
    answer = spec.run(spec.parse({"experiment": PRESETS["toy/checkerboard_ve_order3"]}), None)
    assert answer == {"experiment": PRESETS["toy/checkerboard_ve_order3"]}
    bad = edited(PRESETS["fp/ve_cifar10"], [["loss.terms[1].alpha", -1], ["model.nf", "x"]])
    with pytest.raises(OpError) as info:
        spec.parse({"experiment": bad})
    assert info.value.code == "BAD_REQUEST"
    assert info.value.field in ("args.experiment.loss.terms[1].alpha", "args.experiment.model.nf")
    assert "args.experiment.loss.terms[1].alpha" in info.value.message and "args.experiment.model.nf" in info.value.message
    with pytest.raises(OpError) as info:
        REGISTRY["sample"].parse({"model": "m", "n": 4, "snrr": 1})
    assert info.value.field == "args.snrr" and "unknown key" in info.value.message
    args = REGISTRY["sample"].parse({"model": "m", "n": 4})
    assert args.weights == "ema" and args.seed == 0 and args.snr is None  # zod defaults; absent optionals


def test_the_references_finite_difference_setting_validates_for_vp_and_subvp():
    """FP-Diffusion's ∂t s stencil (hs = 1e-3 > the DSM's eps) is a valid VP / subVP config: the
    one-sided nodes near eps keep it inside the SDE's domain (fpdiff.derivatives)."""
    for name in ("fp/vp_cifar10_reference", "fp/subvp_cifar10_deep_reference"):
        exp = C.experiment_from_wire(PRESETS[name])
        fpe = exp.loss.terms[1]
        assert fpe.dt.finite_difference.hs == 1e-3 and fpe.dt.finite_difference.hd == 5e-4
        assert exp.loss.terms[0].eps == 1e-5
        assert exp.sde.std_formula == "original"
    assert C.experiment_from_wire(PRESETS["fp/vp_cifar10"]).sde.std_formula == "stable"

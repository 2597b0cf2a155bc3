"""Bits/dim of the VE and VP fixture networks (test/fixtures/reference, nf = 8) against a tight float64
solve, independently of the batch, within the original's network evaluations (issue 13).

The fixtures' weights run on 8 × 8 images here (attention at 4 × 4, the second level, as at 16 × 16
for 32 × 32 images: the same modules and weights) so that the default-tolerance solves stay short;
bench/numerics/likelihood_fixture.py measures the same at 32 × 32. The reference numbers are a
float64 solve at rtol = atol = 1e-7 (network and state in float64, log-time), written with Score
SDE's own likelihood.py's bits/dim and NFE by `likelihood_fixture.py --write-test-reference` into
test/fixtures/reference/likelihood_reference.json, which records how and on what machine.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from fpdiff.likelihood import bpd_offset, ode_likelihood

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "numerics"))
REFERENCE_PATH = ROOT / "test" / "fixtures" / "reference" / "likelihood_reference.json"

TOL_BPD = 5e-3

# Opt-in (npm run test:reference) until the reference numbers are written: their float64 solves
# take hours on a shared 2-core CPU (minutes on a GPU: bench/gpu/likelihood.sh).
pytestmark = pytest.mark.reference


def _reference() -> dict:
    return json.loads(REFERENCE_PATH.read_text())


def _bench():
    import likelihood_fixture  # the bench's loader and inputs, so the test and the bench see the same

    return likelihood_fixture


def _solve(sde: str, idx: list[int], **kw):
    lf = _bench()
    REFERENCE = _reference()
    ref = REFERENCE["sdes"][sde]
    model, _net, centered = lf.load(sde, torch.float32, "cpu", REFERENCE["size"])
    x, v = lf.inputs(REFERENCE["n"], REFERENCE["seed"], centered, "cpu", REFERENCE["size"])
    x, v = x[idx].float(), v[:, idx]
    r = ode_likelihood(model, x, divergence="hutchinson", probes=v, rtol=REFERENCE["tol"], atol=REFERENCE["tol"], **kw)
    d = x[0].numel()
    bpd = (-r.logp.double() / (d * math.log(2)) + bpd_offset(centered)).tolist()
    return bpd, r, [ref["reference_bpd"][i] for i in idx]


@pytest.mark.parametrize("sde", ["ve", "vp"])
def test_default_solve_matches_the_tight_float64_solve_in_any_batch_within_the_originals_nfe(sde):
    REFERENCE = _reference()
    ref = REFERENCE["sdes"][sde]
    n = REFERENCE["n"]
    bpd, r, want = _solve(sde, list(range(n)))
    err = [abs(a - b) for a, b in zip(bpd, want)]
    assert max(err) <= TOL_BPD, f"{sde}: |Δbpd| {err}"
    assert r.solver == "dopri5"
    # no more network evaluations of an image, on average, than Score SDE's likelihood.py gives
    # every image of the same batch at the same tolerance
    assert float(r.nfe_per_sample.float().mean()) <= ref["original_nfe"], (r.nfe_per_sample, ref["original_nfe"])
    # the last image alone: the same answer, on the same steps, as within the batch
    alone, ra, _ = _solve(sde, [n - 1])
    assert abs(alone[0] - bpd[n - 1]) <= 1e-5, (alone[0], bpd[n - 1])
    assert int(ra.nfe_per_sample[0]) == int(r.nfe_per_sample[n - 1])


@pytest.mark.original
@pytest.mark.parametrize("sde", ["ve", "vp"])
def test_the_originals_likelihood_py_live(sde):
    """Score SDE's likelihood.py on the same network, images, probe and tolerance (npm run
    test:original): the NFE stored in the reference is what it takes, and fpdiff takes no more."""
    lf = _bench()
    if not os.path.isfile(os.path.join(lf.ORIG, "likelihood.py")):
        pytest.skip(f"original Score SDE code not found at {lf.ORIG}")
    REFERENCE = _reference()
    ref = REFERENCE["sdes"][sde]
    _model, net, centered = lf.load(sde, torch.float32, "cpu", REFERENCE["size"])
    x, v = lf.inputs(REFERENCE["n"], REFERENCE["seed"], centered, "cpu", REFERENCE["size"])
    bpd, nfe = lf._original(net, x, v, centered, REFERENCE["tol"])
    assert nfe == ref["original_nfe"]
    torch.testing.assert_close(bpd.tolist(), ref["original_bpd"], rtol=0, atol=1e-5)
    ours, r, want = _solve(sde, list(range(REFERENCE["n"])))
    assert float(r.nfe_per_sample.float().mean()) <= nfe

#!/usr/bin/env python3
"""Network evaluations and bits/dim error of the per-sample likelihood solve under different step-size
rules, error norms and time variables, on the fixture networks (issue 13, item 4).

The images, probe and 8 × 8 fixture networks are those of py/tests/test_likelihood_fixture.py
(`likelihood_fixture.load` / `inputs`, seed 0); the first two images have the float64 reference of
test/fixtures/reference/likelihood_reference.json (rtol = atol = 1e-7), the rest only count
evaluations. Every variant solves all --n images in one batch at rtol = atol = --tol, float32
network, float64 state, Hutchinson divergence with the fixed probe. Variants (one change each
against `elementary`, fpdiff's default):

  elementary      h ∝ r^(−1/5), safety 0.9, factors 0.2…10 (scipy's RK45 rule; `ode.ELEMENTARY`)
  hairer_pi       Hairer's DOPRI5 PI rule, β = 0.04 (`ode.HAIRER_PI`)
  pi_beta08       the same form with β = 0.08 (Gustafsson's k_P = 0.4/k)
  pi_same_target  β = 0.04 with the safety that gives the elementary rule's stationary ratio
                  0.9^5 (safety 0.9^(5(0.2 − 1.75β))): the PI dynamics at the same target error
  mixed           error norm "mixed" (Δ held to the tolerance on its own)
  time_t          VP in time t instead of log t
  logsnr          VP in log-SNR time λ = log(α/σ) (Lu et al. 2022's variable; dx/dλ = σ²x − σε̂),
                  solved here by the bench (fpdiff does not offer it)

    node scripts/python.mjs bench/numerics/likelihood_step_control.py --sdes vp --n 6
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

from common import ROOT, machine, write

import likelihood_fixture as lf

REFERENCE = os.path.join(ROOT, "test", "fixtures", "reference", "likelihood_reference.json")
VARIANTS = ("elementary", "hairer_pi", "pi_beta08", "pi_same_target", "mixed", "time_t", "logsnr")
VP_ONLY = ("time_t", "logsnr")


def _kwargs(variant: str) -> dict:
    from fpdiff import ode

    beta = 0.04
    return {
        "elementary": {},
        "hairer_pi": {"step_control": ode.HAIRER_PI},
        "pi_beta08": {"step_control": ode.StepControl(beta=0.08)},
        "pi_same_target": {"step_control": ode.StepControl(beta=beta, safety=0.9 ** (5 * (0.2 - 1.75 * beta)))},
        "mixed": {"norm": "mixed"},
        "time_t": {"time": "t"},
    }[variant]


def _logsnr_solve(model, x, v, tol: float, eps: float = 1e-5):
    """VP likelihood in λ = log α_t − log σ_t: with L = ∫_0^t β = log(1 + e^{−2λ}), σ² = 1 − e^{−L},
    t = 2L / (β_0 + √(β_0² + 2(β_1 − β_0)L)) and dt/dλ = −2σ²/β(t). Returns (log p, per-sample NFE)."""
    import torch

    from fpdiff import ode
    from fpdiff.divergence import divergence_eval
    from fpdiff.sde import bcast

    sde = model.sde
    b0, b1 = sde.beta_min, sde.beta_max

    def t_of(lam):
        L = torch.log1p(torch.exp(-2 * lam))
        return 2 * L / (b0 + torch.sqrt(b0 * b0 + 2 * (b1 - b0) * L)), -torch.expm1(-L)

    def lam_of(t: float) -> float:
        return -0.5 * math.log(math.expm1(b0 * t + 0.5 * (b1 - b0) * t * t))

    def f(lam, y, idx):
        t, var = t_of(lam)
        xs = y[0]
        s, div = divergence_eval(model, xs.float(), t.float(), v[:, idx], mode="auto")
        g2 = sde.g2(t)
        dx = sde.drift(xs, t) - 0.5 * bcast(g2, xs) * s.double()
        dd = sde.div_drift(xs, t) - 0.5 * g2 * div.double()
        w = -2 * var / sde.beta(t)
        return bcast(w, dx) * dx, w * dd

    y0 = (x.double(), torch.zeros(x.shape[0], dtype=torch.float64))
    sol = ode.dopri5(f, y0, lam_of(eps), lam_of(sde.T), rtol=tol, atol=tol)
    return sde.prior_logp(sol.y[0]) + sol.y[1], sol


def run(variant: str, sde: str, n: int, tol: float, size: int) -> dict:
    import torch

    from fpdiff.likelihood import bpd_offset, ode_likelihood

    model, _net, centered = lf.load(sde, torch.float32, "cpu", size)
    x, v = lf.inputs(n, 0, centered, "cpu", size)
    t0 = time.perf_counter()
    if variant == "logsnr":
        with torch.no_grad():
            logp, sol = _logsnr_solve(model, x, v, tol)
        nfe, steps, rejected = sol.nfe, sol.steps, sol.rejected
    else:
        holder = {}
        from fpdiff import ode

        real = ode.dopri5

        def spy(*a, **kw):  # the solver's own counts (accepted / rejected) as well as the NFE
            holder["sol"] = real(*a, **kw)
            return holder["sol"]

        ode.dopri5 = spy
        try:
            r = ode_likelihood(model, x.float(), divergence="hutchinson", probes=v, rtol=tol, atol=tol, **_kwargs(variant))
        finally:
            ode.dopri5 = real
        logp, sol = r.logp, holder["sol"]
        nfe, steps, rejected = r.nfe_per_sample, sol.steps, sol.rejected
    bpd = (-logp.double() / (x[0].numel() * math.log(2)) + bpd_offset(centered)).tolist()
    return {"bpd": bpd, "nfe": nfe.tolist(), "steps": steps.tolist(), "rejected": rejected.tolist(),
            "seconds": time.perf_counter() - t0}


def summarise(row: dict, ref: dict | None) -> dict:
    """Error against the reference and mean NFE (over the referenced images and over all); without
    a reference (another image size) only the NFE."""
    if ref is None:
        return {**row, "mean_nfe_all": sum(row["nfe"]) / len(row["nfe"])}
    k = len(ref["reference_bpd"])
    err = [a - b for a, b in zip(row["bpd"], ref["reference_bpd"])]
    return {**row, "err_vs_reference": err, "max_abs_err": max(abs(e) for e in err),
            "mean_nfe_referenced": sum(row["nfe"][:k]) / k, "mean_nfe_all": sum(row["nfe"]) / len(row["nfe"]),
            "original_nfe": ref["original_nfe"], "original_max_abs_err":
                max(abs(a - b) for a, b in zip(ref["original_bpd"], ref["reference_bpd"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdes", default="vp,ve")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--n", type=int, default=6, help="images in the batch (the first 2 have a reference)")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, help="image side (default: the reference's; another size has no reference)")
    ap.add_argument("--note", default="", help="recorded in the results")
    ap.add_argument("--cache", default=os.path.join(ROOT, "bench", "results", "likelihood_step_control.cpu.cache.json"))
    ap.add_argument("--out")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    refs = json.load(open(REFERENCE))
    size = a.size or refs["size"]
    cache = json.load(open(a.cache)) if os.path.isfile(a.cache) else {}
    for sde in a.sdes.split(","):
        for variant in a.variants.split(","):
            if variant in VP_ONLY and sde != "vp":
                continue
            key = f"{sde}:{variant}:n{a.n}:tol{a.tol}:threads{a.threads}" + ("" if size == refs["size"] else f":size{size}")
            if key not in cache:
                row = run(variant, sde, a.n, a.tol, size)
                cache = json.load(open(a.cache)) if os.path.isfile(a.cache) else {}  # another run may have added
                cache[key] = row
                with open(a.cache + ".tmp", "w") as fh:
                    json.dump(cache, fh, indent=1)
                os.replace(a.cache + ".tmp", a.cache)
            s = summarise(cache[key], refs["sdes"][sde] if size == refs["size"] else None)
            if "max_abs_err" in s:
                print(f"{sde} {variant:15s} max|Δbpd| {s['max_abs_err']:.2e}  NFE/image {s['mean_nfe_referenced']:.0f} "
                      f"(all {a.n}: {s['mean_nfe_all']:.0f}; original {s['original_nfe']})  rejected {s['rejected']}",
                      flush=True)
            else:
                print(f"{sde} {variant:15s} {size}x{size}  NFE/image {s['mean_nfe_all']:.0f}  rejected {s['rejected']}",
                      flush=True)
    rows: dict = {}
    for key, row in cache.items():
        sde, variant, rest = key.split(":", 2)
        rows.setdefault(sde, {})[f"{variant}:{rest}"] = summarise(row, None if ":size" in rest else refs["sdes"][sde])
    payload = {"machine": machine("cpu"), "size": refs["size"], "reference": REFERENCE.replace(ROOT + "/", ""),
               "how": "node scripts/python.mjs bench/numerics/likelihood_step_control.py --sdes SDE --n N --tol TOL "
                      "[--size S]; keys: variant:n<images>:tol<rtol = atol>:threads<torch threads>[:size<S>]",
               "note": a.note, "results": rows}
    print(write("likelihood_step_control", payload, a.out))


if __name__ == "__main__":
    main()

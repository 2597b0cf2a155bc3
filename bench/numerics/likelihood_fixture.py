#!/usr/bin/env python3
"""Bits/dim of the fixture networks (test/fixtures/reference, nf = 8, VE and VP) by the probability-flow
ODE: accuracy against a tight float64 solve, network evaluations and time, before and after the
per-sample solver, beside Score SDE's own likelihood.py on the same network, images and probe.

Every variant sees the same random images (U[0, 1) in [0, 1] space, seed --seed) and the same
Rademacher probe (drawn as the original draws it after torch.manual_seed(--seed + 1)); their exact
ODE solution is the same number, so every difference is numerical error. Variants:

  reference      float64 network and state, per-sample dopri5, rtol = atol = 1e-7, mixed norm
  after          fpdiff's `ode_likelihood` with its defaults (float32 network, per-sample steps)
  after_alone    the same, each image solved alone (batch independence)
  before         fpdiff until this change: torchdiffeq dopri5 on (x, Δ) in float32, one step for
                 the batch, torchdiffeq's mixed norm, forward-mode divergence
  original       Score SDE's likelihood.py (FPD_ORIGINAL_SCORE_SDE: a checkout of
                 yang-song/score_sde_pytorch, imported read-only; never shipped): scipy RK45 on the
                 flattened float64 batch state, float32 network, reverse-mode divergence
  original_alone the same, each image alone
  and the cause decomposition (one change to `before` at a time, or to `after`):
  tdq_state64    torchdiffeq as `before` with a float64 state
  tdq_rms        torchdiffeq as `before` with scipy's RMS norm over the flattened state
  after_mixed    per-sample, torchdiffeq's mixed norm (Δ held to the tolerance on its own)
  after_state32  per-sample, float32 state
  after_reverse  per-sample, reverse-mode divergence

    .venv/bin/python bench/numerics/likelihood_fixture.py --sdes vp --variants reference,after
    FPD_ORIGINAL_SCORE_SDE=/path/to/score_sde_pytorch python bench/numerics/likelihood_fixture.py --device cuda

Results accumulate in --cache (one entry per sde and variant, so runs resume and combine) and the
summary goes to bench/results/likelihood_fixture_<device>_<date>.json.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from common import ROOT, arguments, machine, parse, sync, write

sys.path.insert(0, os.path.join(ROOT, "py", "tests"))

FIXTURE = {"ve": "ve_ncsnpp_small_seed0", "vp": "vp_ddpmpp_small_seed0"}
ORIG = os.environ.get("FPD_ORIGINAL_SCORE_SDE", "/work/orig/yang-song+score_sde_pytorch")
VARIANTS = ("reference", "after", "after_alone", "before", "original", "original_alone", "tdq_state64", "tdq_rms",
            "after_mixed", "after_state32", "after_reverse")


def load(sde: str, dtype, device, size: int = 32):
    """The fixture network (EMA weights) for size × size images: attention sits at size/2, the
    second level, as the fixture's 16 for 32 × 32, so every module keeps its place and shape."""
    import dataclasses

    import torch

    from _ckpt_helpers import fixture_configs, fixture_meta, fixture_paths, sde_cfg
    from fpdiff import checkpoints as C
    from fpdiff.models import build_network
    from fpdiff.score import score_model

    name = FIXTURE[sde]
    model_cfg, data_cfg = fixture_configs(name)
    model_cfg = dataclasses.replace(model_cfg, attn_resolutions=(size // 2,))
    data_cfg = dataclasses.replace(data_cfg, image_size=size)
    net = build_network(model_cfg, data_cfg)
    C.restore(net, C.load_checkpoint(fixture_paths(name)[0]), weights="ema")
    net = net.eval().to(device=device, dtype=dtype)
    return score_model(net, sde_cfg(fixture_meta(name)), model_cfg), net, data_cfg.centered


def inputs(n: int, seed: int, centered: bool, device, size: int = 32):
    """Images in model space (float64) and the Rademacher probe [1, n, ...] the original would draw."""
    import torch

    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if centered:
        x = 2 * x - 1
    torch.manual_seed(seed + 1)  # as the original's own draw after this seed
    v = torch.randint_like(x.float(), low=0, high=2).float() * 2 - 1
    return x.to(device), v.unsqueeze(0).to(device)


def _legacy(model, x, v, *, state_dtype, norm, tol):
    """fpdiff's solve before the per-sample solver: torchdiffeq on the batch (one step size)."""
    import torch
    from torchdiffeq import odeint

    from fpdiff.divergence import divergence_eval
    from fpdiff.sde import bcast

    sde, b, nfe = model.sde, x.shape[0], 0

    def func(t, state):
        nonlocal nfe
        nfe += 1
        xs = state[0]
        vt = t.expand(b).to(xs.dtype)
        s, div = divergence_eval(model, xs.float(), vt.float(), v, mode="forward")
        g2 = sde.g2(vt)
        return (sde.drift(xs, vt) - 0.5 * bcast(g2, xs) * s.to(xs.dtype),
                sde.div_drift(xs, vt) - 0.5 * g2 * div.to(xs.dtype))

    opts = {}
    if norm == "rms":
        def flat(ys):
            return torch.sqrt(sum(y.pow(2).sum() for y in ys) / sum(y.numel() for y in ys))
        opts["norm"] = flat
    y0 = (x.to(state_dtype), torch.zeros(b, dtype=state_dtype, device=x.device))
    ts = torch.tensor([1e-5, sde.T], dtype=state_dtype, device=x.device)
    with torch.no_grad():
        xs, ds = odeint(func, y0, ts, rtol=tol, atol=tol, method="dopri5", options=opts)
    return model.sde.prior_logp(xs[-1].double()) + ds[-1].double(), nfe, [nfe] * b


def _original(net, x, v, centered: bool, tol: float):
    """Score SDE's likelihood_fn on our network (same weights and forward as its NCSNpp), with the
    probe v: the function draws its own by torch.randint_like, answered here with (v + 1)/2."""
    import torch

    if not os.path.isfile(os.path.join(ORIG, "likelihood.py")):
        raise FileNotFoundError(f"Score SDE's code not found at {ORIG} (set FPD_ORIGINAL_SCORE_SDE)")
    sys.path.insert(0, ORIG)
    try:
        import likelihood as orig_likelihood  # noqa: PLC0415 - the original's module, read-only
        import sde_lib
    finally:
        sys.path.remove(ORIG)
    sde = sde_lib.VPSDE(0.1, 20.0, 1000) if centered else sde_lib.VESDE(0.01, 50.0, 1000)
    inverse_scaler = (lambda y: (y + 1.0) / 2.0) if centered else (lambda y: y)
    fn = orig_likelihood.get_likelihood_fn(sde, inverse_scaler, hutchinson_type="Rademacher", rtol=tol, atol=tol)
    real = torch.randint_like
    torch.randint_like = lambda data, low=0, high=2, **kw: ((v[0] + 1) / 2).to(data.dtype)
    try:
        bpd, _z, nfe = fn(net, x.float())
    finally:
        torch.randint_like = real
    return bpd.double(), nfe


def run_variant(variant: str, sde: str, n: int, seed: int, device: str, tol: float = 1e-5, size: int = 32) -> dict:
    import torch

    from fpdiff.likelihood import bpd_offset, ode_likelihood

    dt = torch.float64 if variant == "reference" else torch.float32
    model, net, centered = load(sde, dt, device, size)
    x, v = inputs(n, seed, centered, device, size)
    d = x[0].numel()
    offset = bpd_offset(centered)

    def bpd_of(logp):
        return (-logp.double() / (d * math.log(2)) + offset).cpu().tolist()

    t0 = time.perf_counter()
    sync(device)
    out: dict = {}
    if variant == "reference":
        r = ode_likelihood(model, x, rtol=1e-7, atol=1e-7, divergence="hutchinson", probes=v.double(), norm="mixed",
                           div_mode="reverse")
        out = {"bpd": bpd_of(r.logp), "nfe": r.nfe, "nfe_per_sample": r.nfe_per_sample.tolist()}
    elif variant.startswith("after"):
        kw = {"after_mixed": {"norm": "mixed"}, "after_state32": {"state_dtype": torch.float32},
              "after_reverse": {"div_mode": "reverse"}}.get(variant, {})
        if variant == "after_alone":
            bpd, nfe, per = [], 0, []
            for i in range(n):
                r = ode_likelihood(model, x[i:i + 1].float(), divergence="hutchinson", probes=v[:, i:i + 1], rtol=tol,
                                   atol=tol, **kw)
                bpd += bpd_of(r.logp)
                nfe += r.nfe
                per += r.nfe_per_sample.tolist()
            out = {"bpd": bpd, "nfe": nfe, "nfe_per_sample": per}
        else:
            r = ode_likelihood(model, x.float(), divergence="hutchinson", probes=v, rtol=tol, atol=tol, **kw)
            out = {"bpd": bpd_of(r.logp), "nfe": r.nfe, "nfe_per_sample": r.nfe_per_sample.tolist(), "solver": r.solver}
    elif variant in ("before", "tdq_state64", "tdq_rms"):
        logp, nfe, per = _legacy(model, x, v, state_dtype=torch.float64 if variant == "tdq_state64" else torch.float32,
                                 norm="rms" if variant == "tdq_rms" else "mixed", tol=tol)
        out = {"bpd": bpd_of(logp), "nfe": nfe, "nfe_per_sample": per}
    elif variant == "original":
        bpd, nfe = _original(net, x, v, centered, tol)
        out = {"bpd": bpd.cpu().tolist(), "nfe": nfe, "nfe_per_sample": [nfe] * n}
    elif variant == "original_alone":
        bpd, per = [], []
        for i in range(n):
            b_i, nfe_i = _original(net, x[i:i + 1], v[:, i:i + 1], centered, tol)
            bpd.append(float(b_i[0]))
            per.append(nfe_i)
        out = {"bpd": bpd, "nfe": sum(per), "nfe_per_sample": per}
    else:
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    sync(device)
    out["seconds"] = time.perf_counter() - t0
    return out


TEST_PARTS = ("reference", "check", "original")


def write_test_reference(path: str, size: int, n: int, seed: int, tol: float, device: str, sdes: list[str],
                         parts: list[str]) -> None:
    """The numbers py/tests/test_likelihood_fixture.py checks against, per image: `reference`, a
    float64 solve at rtol = atol = 1e-7 (RMS norm, log-time, reverse mode); `check`, the same with
    the mixed norm in time t (another step sequence entirely; costly); `original`, Score SDE's
    likelihood.py on the batch at
    `tol` (its bits/dim and NFE). Parts and SDEs can run in separate processes: each merges its
    numbers into `path`."""
    import torch

    from fpdiff.likelihood import bpd_offset, ode_likelihood

    for sde in sdes:
        for part in parts:
            model, net, centered = load(sde, torch.float32 if part == "original" else torch.float64, device, size)
            x, v = inputs(n, seed, centered, device, size)
            d = x[0].numel()
            t0 = time.perf_counter()
            if part == "original":
                bpd, nfe = _original(net, x, v, centered, tol)
                entry = {"original_bpd": bpd.cpu().tolist(), "original_nfe": nfe}
            else:
                ref = part == "reference"
                r = ode_likelihood(model, x, rtol=1e-7, atol=1e-7, divergence="hutchinson", probes=v.double(),
                                   norm="rms" if ref else "mixed", time="log" if ref else "t", div_mode="reverse")
                bpd = (-r.logp.double() / (d * math.log(2)) + bpd_offset(centered)).cpu().tolist()
                entry = {f"{part}_bpd": bpd, f"{part}_nfe": r.nfe_per_sample.tolist()}
            entry[f"{part}_seconds"] = time.perf_counter() - t0
            out = json.load(open(path)) if os.path.isfile(path) else {}
            if [out.get(k) for k in ("size", "n", "seed", "tol")] != [size, n, seed, tol]:
                out = {}
            out.update({
                "how": "bench/numerics/likelihood_fixture.py --write-test-reference PATH --size "
                       f"{size} --n {n} --seed {seed} --tol {tol} --sdes SDE --parts PART",
                "reference": "float64 network and state, per-sample dopri5, rtol = atol = 1e-7, RMS norm, "
                             "log-time (τ = log t), reverse-mode divergence",
                "check": "the same with the mixed norm (Δ held on its own) in time t",
                "original": f"Score SDE's likelihood.py (scipy RK45 on the batch's flattened state) at rtol = atol = {tol}",
                "size": size, "n": n, "seed": seed, "tol": tol, "machine": machine(device)})
            out.setdefault("sdes", {}).setdefault(sde, {}).update(entry)
            with open(path + ".tmp", "w") as fh:
                json.dump(out, fh, indent=1)
            os.replace(path + ".tmp", path)
            print(sde, part, json.dumps(entry), flush=True)


def summarise(cache: dict, sdes: list[str]) -> dict:
    out: dict = {}
    for sde in sdes:
        ref = cache.get(f"{sde}:reference")
        rows = {}
        for variant in VARIANTS:
            r = cache.get(f"{sde}:{variant}")
            if r is None:
                continue
            row = {"bpd": r["bpd"], "nfe": r["nfe"], "nfe_per_sample": r["nfe_per_sample"], "seconds": r["seconds"]}
            if ref is not None and variant != "reference":
                err = [a - b for a, b in zip(r["bpd"], ref["bpd"])]
                row["err_vs_reference"] = err
                row["max_abs_err"] = max(abs(e) for e in err)
            rows[variant] = row
        out[sde] = rows
    return out


def main() -> None:
    ap = arguments()
    ap.add_argument("--sdes", default="vp,ve")
    ap.add_argument("--variants", default="reference,after,after_alone,before,original")
    ap.add_argument("--n", type=int, default=4, help="images")
    ap.add_argument("--size", type=int, default=32, help="image side (the fixtures' weights fit 8, 16, 32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-5, help="rtol = atol of every variant but the reference")
    ap.add_argument("--cache", help="raw per-variant results (default bench/results/likelihood_fixture.<device>.cache.json)")
    ap.add_argument("--write-test-reference", metavar="PATH", help="write the test's reference numbers and stop")
    ap.add_argument("--parts", default=",".join(TEST_PARTS), help="with --write-test-reference")
    a = parse(ap)
    if a.write_test_reference:
        write_test_reference(a.write_test_reference, a.size, a.n, a.seed, a.tol, a.device, a.sdes.split(","),
                             a.parts.split(","))
        return
    if not a.cache:
        a.cache = os.path.join(ROOT, "bench", "results", f"likelihood_fixture.{a.device.replace(':', '')}.cache.json")
    cache = json.load(open(a.cache)) if os.path.isfile(a.cache) else {}
    sdes = a.sdes.split(",")
    for sde in sdes:
        for variant in a.variants.split(","):
            key = f"{sde}:{variant}"
            if key in cache and [cache[key].get(k) for k in ("n", "seed", "tol", "size")] == [a.n, a.seed, a.tol, a.size]:
                continue
            try:
                res = run_variant(variant, sde, a.n, a.seed, a.device, a.tol, a.size)
            except FileNotFoundError as exc:
                print(f"{key}: skipped ({exc})", flush=True)
                continue
            res.update({"n": a.n, "seed": a.seed, "tol": a.tol, "size": a.size, "device": a.device})
            cache = json.load(open(a.cache)) if os.path.isfile(a.cache) else {}  # another run may have added
            cache[key] = res
            with open(a.cache + ".tmp", "w") as fh:
                json.dump(cache, fh, indent=1)
            os.replace(a.cache + ".tmp", a.cache)
            print(key, json.dumps({k: res[k] for k in ("bpd", "nfe", "seconds")}), flush=True)
    summary = summarise(cache, sdes)
    payload = {"machine": machine(a.device), "n": a.n, "seed": a.seed, "tolerance": a.tol, "size": a.size,
               "reference": "float64 network and state, per-sample dopri5, rtol = atol = 1e-7, mixed norm",
               "results": summary}
    print(write("likelihood_fixture", payload, a.out))
    for sde, rows in summary.items():
        for variant, row in rows.items():
            err = f"max |Δbpd| {row['max_abs_err']:.2e}" if "max_abs_err" in row else ""
            print(f"{sde:3s} {variant:15s} NFE {row['nfe']:6d}  {row['seconds']:8.1f} s  {err}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Two numerics choices measured on the fixture networks (test/fixtures/reference, nf = 8), in float32
as training runs:

1. `sde.stdFormula`: the likelihood-weighted (and conventional) DSM loss with std(t) by "original"
   (Score SDE / FP-Diffusion's float32 1 − exp(2c)) against "stable" (expm1), same x0, z and t, per
   t near eps and over training draws of t. VP on the VP network; subVP on the same network (the
   formula's effect, not a trained subVP model).
2. The reference's finite-difference ∂t s (hs = 1e-3, hd = 5e-4; one-sided near eps) against exact
   forward-mode ∂t s (float64 network), at perturbed points x_t of random images: relative error
   ‖fd − exact‖ / ‖exact‖ per t, with the stencil in float32 (as training) and in float64 (its
   truncation error alone).

    .venv/bin/python bench/numerics/std_and_stencil.py            # CPU, writes bench/results/...
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from common import ROOT, machine, wire_loss, write

sys.path.insert(0, os.path.join(ROOT, "py", "tests"))


def _load(name: str, dtype, std_formula: str = "stable", kind: str | None = None):
    import torch

    from _ckpt_helpers import fixture_configs, fixture_meta, fixture_paths, sde_cfg
    from fpdiff import checkpoints as C
    from fpdiff.models import build_network
    from fpdiff.score import score_model

    model_cfg, data_cfg = fixture_configs(name)
    net = build_network(model_cfg, data_cfg)
    C.restore(net, C.load_checkpoint(fixture_paths(name)[0]), weights="ema")
    from fpdiff import config as cfgs

    sde = sde_cfg(fixture_meta(name))
    kind = kind or sde.kind
    if kind != "ve":
        cls = cfgs.VPSDEConfig if kind == "vp" else cfgs.SubVPSDEConfig
        sde = cls(beta_min=sde.beta_min, beta_max=sde.beta_max, N=sde.N, std_formula=std_formula)
    return score_model(net.eval().to(dtype), sde, model_cfg), data_cfg


def std_effect(n: int, seed: int) -> dict:
    import torch


    out: dict = {}
    g = torch.Generator().manual_seed(seed)
    x0 = 2 * torch.rand(n, 3, 32, 32, generator=g) - 1
    z = torch.randn(n, 3, 32, 32, generator=g)
    t_fixed = [1e-5, 3e-5, 1e-4, 1e-3, 1e-2, 0.1]
    u = torch.rand(256, generator=g)
    for kind in ("vp", "subvp"):
        models = {f: _load("vp_ddpmpp_small_seed0", torch.float32, f, kind)[0] for f in ("stable", "original")}
        rows = []
        for weighting in ("likelihood", "conventional"):
            loss = wire_loss([{"kind": "dsm", "weighting": weighting, "reduce": "mean", "eps": 1e-5}])
            for tv in t_fixed:
                t = torch.full((n,), tv)
                with torch.no_grad():
                    per = {f: loss.terms[0].per_sample(loss.draw(m, x0, t=t, z=z, create_graph=False))
                           for f, m in models.items()}
                rel = (per["original"].double() / per["stable"].double() - 1)
                rows.append({"weighting": weighting, "t": tv, "rel_diff_mean": float(rel.mean()),
                             "rel_diff_max_abs": float(rel.abs().max())})
        # training draws t ~ U[eps, 1] (likelihood weighting), the batch loss
        loss = wire_loss([{"kind": "dsm", "weighting": "likelihood", "reduce": "mean", "eps": 1e-5}])
        ts = 1e-5 + u * (1 - 1e-5)
        tot = {}
        for f, m in models.items():
            acc = 0.0
            for i in range(0, ts.numel(), n):
                tb = ts[i:i + n]
                with torch.no_grad():
                    acc += float(loss.terms[0].per_sample(loss.draw(m, x0[:tb.numel()], t=tb, z=z[:tb.numel()],
                                                                    create_graph=False)).double().sum())
            tot[f] = acc / ts.numel()
        sd = {f: m.sde for f, m in models.items()}
        tt = torch.tensor(t_fixed, dtype=torch.float32)
        std_rel = (sd["original"].marginal_std(tt).double() / sd["stable"].marginal_std(tt).double() - 1).tolist()
        out[kind] = {"per_t": rows, "std_rel_diff_per_t": dict(zip(map(str, t_fixed), std_rel)),
                     "uniform_t_batch_loss_rel_diff": tot["original"] / tot["stable"] - 1, "uniform_t_draws": ts.numel()}
    return out


def stencil_error(n: int, seed: int) -> dict:
    import torch

    from fpdiff.derivatives import FiniteDifference, ScoreDerivatives

    out: dict = {}
    ts = [1e-5, 1e-4, 5e-4, 1e-3, 2e-3, 1e-2, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0 - 1e-3]
    for name in ("ve_ncsnpp_small_seed0", "vp_ddpmpp_small_seed0"):
        m32, data_cfg = _load(name, torch.float32, "original")
        m64, _ = _load(name, torch.float64, "original")
        g = torch.Generator().manual_seed(seed)
        x0 = torch.rand(n, 3, 32, 32, generator=g, dtype=torch.float64)
        if data_cfg.centered:
            x0 = 2 * x0 - 1
        z = torch.randn(n, 3, 32, 32, generator=g, dtype=torch.float64)
        rows = []
        for tv in ts:
            t = torch.full((n,), tv, dtype=torch.float64)
            mean, std = m64.sde.marginal(x0, t)
            xt = mean + std[:, None, None, None] * z
            exact = ScoreDerivatives(m64, xt, t, dt="autodiff", create_graph=False).dt_s.detach()
            row = {"t": tv}
            for label, m, dt in (("float32", m32, torch.float32), ("float64", m64, torch.float64)):
                fd = ScoreDerivatives(m, xt.to(dt), t.to(dt), dt=FiniteDifference(1e-3, 5e-4), create_graph=False,
                                      t_min=1e-5).dt_s.detach().double()
                rel = (fd - exact).reshape(n, -1).norm(dim=1) / exact.reshape(n, -1).norm(dim=1)
                row[f"rel_err_{label}"] = float(rel.mean())
            rows.append(row)
        # training draws: t ~ U[eps, 1], the mean relative error over them
        u = 1e-5 + torch.rand(32, generator=g, dtype=torch.float64) * (1 - 1e-5)
        errs = []
        for i in range(0, u.numel(), n):
            t = u[i:i + n]
            b = t.numel()
            mean, std = m64.sde.marginal(x0[:b], t)
            xt = mean + std[:, None, None, None] * z[:b]
            exact = ScoreDerivatives(m64, xt, t, dt="autodiff", create_graph=False).dt_s.detach()
            fd = ScoreDerivatives(m32, xt.float(), t.float(), dt=FiniteDifference(1e-3, 5e-4), create_graph=False,
                                  t_min=1e-5).dt_s.detach().double()
            errs += ((fd - exact).reshape(b, -1).norm(dim=1) / exact.reshape(b, -1).norm(dim=1)).tolist()
        out[name] = {"per_t": rows, "uniform_t_mean_rel_err_float32": sum(errs) / len(errs),
                     "uniform_t_median_rel_err_float32": sorted(errs)[len(errs) // 2], "uniform_t_draws": len(errs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    payload = {"machine": machine("cpu"), "n": a.n, "seed": a.seed,
               "std_formula": std_effect(a.n, a.seed), "stencil": stencil_error(a.n, a.seed)}
    print(write("std_and_stencil", payload, a.out))
    for kind, r in payload["std_formula"].items():
        lw = [row for row in r["per_t"] if row["weighting"] == "likelihood"]
        print(kind, "likelihood-weighted DSM rel. diff (original/stable − 1) by t:",
              ", ".join(f"{row['t']:g}: {row['rel_diff_mean']:+.2%}" for row in lw),
              f"| U[eps,1] batch: {r['uniform_t_batch_loss_rel_diff']:+.3%}")
    for name, r in payload["stencil"].items():
        print(name, "stencil rel. error by t (float32):",
              ", ".join(f"{row['t']:g}: {row['rel_err_float32']:.1%}" for row in r["per_t"]),
              f"| U[eps,1] mean {r['uniform_t_mean_rel_err_float32']:.1%}")


if __name__ == "__main__":
    main()

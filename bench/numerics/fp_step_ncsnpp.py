#!/usr/bin/env python3
"""Cost of one FP-Diffusion training step (DSM + score-FPE, 'both', 'll', α = 0.15, β = 0.01, m = 2,
Hutchinson ∇·s with one Gaussian probe, points x_t) on a small DDPM++ (NCSN++ class) for VP, as
multiples of a DSM step: fpdiff with the original finite-difference ∂t s (equal settings) and
with forward-mode ∂t s, side by side with sony/fp-diffusion's own step (its `get_sde_loss_fn`
with its `sde_lib.PDE`, its NCSN++ class, the same weights), in rotation in one process.

    .venv/bin/python bench/numerics/fp_step_ncsnpp.py --batch 4 --repeats 5
    python bench/numerics/fp_step_ncsnpp.py --device cuda --batch 48 --nf 128 --repeats 10

The original cannot be imported as published (docs/maths.md §5.5): its `sde_lib` imports Reshape/Flatten/
Merge from a `utils` module that defines them inside a function and imports TensorFlow. This
harness gives it a stand-in `utils` with module-level Reshape/Flatten/Merge (3×32×32 images) and
its `op` package fpdiff's plain-PyTorch upfirdn2d (its own compiles a CUDA extension); everything
else is the original, run from FPD_ORIGINAL_FP_DIFFUSION (default /work/orig/sony+fp-diffusion).
Writes bench/results/fp_step_ncsnpp_<device>_<date>.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import traceback
import types
from types import SimpleNamespace

from common import arguments, interleaved, machine, parse, train_step, wire_loss, write

ORIG_FP = os.environ.get("FPD_ORIGINAL_FP_DIFFUSION", "/work/orig/sony+fp-diffusion")


def _stand_in_utils():
    import torch

    mod = types.ModuleType("utils")

    class Reshape(torch.nn.Module):
        def __init__(self, c, h, w):
            super().__init__()
            self.shape = (c, h, w)

        def forward(self, x):
            return x.reshape(x.shape[0], *self.shape)

    class Flatten(torch.nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], -1)

    class Merge(torch.nn.Module):
        """Flat [B, 3072] in, the wrapped score on 3×32×32, flat out (the reference's wrapper)."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            return self.net(x.reshape(x.shape[0], 3, 32, 32), t).reshape(x.shape[0], -1)

    mod.Reshape, mod.Flatten, mod.Merge = Reshape, Flatten, Merge
    return mod


def _load_original():
    import importlib

    from fpdiff.models.fir import upfirdn2d

    op = types.ModuleType("op")
    op.upfirdn2d = upfirdn2d
    sys.modules["op"] = op
    sys.modules["utils"] = _stand_in_utils()
    sys.path.insert(0, ORIG_FP)
    return (importlib.import_module("losses"), importlib.import_module("sde_lib"),
            importlib.import_module("models.ncsnpp"))


def main() -> None:
    ap = arguments()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--nf", type=int, default=32)
    ap.add_argument("--ch-mult", default="1,2,2")
    ap.add_argument("--num-res-blocks", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    a = parse(ap)

    import torch

    from fpdiff.models import architecture, build_network
    from fpdiff.score import score_model
    from fpdiff.sde import VPSDE

    dev = torch.device(a.device)
    arch = architecture("vp/cifar10_ddpmpp_continuous").with_model(
        nf=a.nf, ch_mult=tuple(int(c) for c in a.ch_mult.split(",")), num_res_blocks=a.num_res_blocks)
    model_fields = {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in dataclasses.asdict(arch.model).items()}
    torch.manual_seed(0)
    net = build_network(arch.model, arch.data).to(dev)
    sde = VPSDE()
    model = score_model(net, sde, arch.model)
    x = (torch.rand(a.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(dev)
    gen = torch.Generator(device=dev).manual_seed(2)
    dsm = {"kind": "dsm", "weighting": "likelihood", "reduce": "sum"}
    fpe = dict(kind="scoreFpe", mode="both", alpha=0.15, beta=0.01, m=2, weighting="ll", points="pert",
               div="hutchinson", probe="gaussian")
    presets = {
        "dsm": [dsm],
        "fp_finite_difference": [dsm, dict(fpe, dt={"finiteDifference": {"hs": 1e-3, "hd": 5e-4}})],
        "fp_autodiff": [dsm, dict(fpe, dt="autodiff")],
    }
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)

    fns = {f"fpdiff/{k}": train_step(wire_loss(terms), model, opt, lambda: x, gen) for k, terms in presets.items()}
    out = {"machine": machine(a.device), "config": vars(a), "model": model_fields,
           "parameters": sum(q.numel() for q in net.parameters()), "presets": presets}
    try:
        olosses, osde_lib, oncsnpp = _load_original()
        cfg = SimpleNamespace(model=SimpleNamespace(**{k: v for k, v in model_fields.items() if k != "kind"}),
                              data=SimpleNamespace(**dataclasses.asdict(arch.data)),
                              training=SimpleNamespace(continuous=True))
        cfg.model.name = "ncsnpp"
        onet = oncsnpp.NCSNpp(cfg).to(dev)
        onet.load_state_dict(net.state_dict(), strict=True)
        oopt = torch.optim.Adam(onet.parameters(), lr=2e-4)
        osde = osde_lib.VPSDE(beta_min=0.1, beta_max=20, N=1000)
        common = dict(train=True, reduce_mean=False, continuous=True, likelihood_weighting=True, eps=1e-5,
                      scalar_fp="both", fp_dist="pert", fp_wgt_type="ll", beta=0.01, m=2)
        loss_dsm = olosses.get_sde_loss_fn(osde, alpha=0.0, **common)
        loss_fp = olosses.get_sde_loss_fn(osde, alpha=0.15, **common)

        def orig(loss_fn):
            def step():
                with contextlib.redirect_stdout(io.StringIO()):  # the reference prints every step
                    loss = loss_fn(onet, x)
                oopt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(onet.parameters(), 1.0)
                oopt.step()
            return step

        fns["original/dsm"] = orig(loss_dsm)
        fns["original/fp"] = orig(loss_fp)
        out["original_observation"] = (
            "inside PDE.fp the reference calls its VPSDE.sde on flattened x [B, D], whose drift "
            "beta_t[:, None, None, None] * x broadcasts to [B, B, B, D] (computed, then unused): "
            f"{a.batch ** 3 * 3072 * 4 / 2 ** 20:.1f} MiB per call at this batch")
        out["original_harness"] = ("stand-in utils (Reshape/Flatten/Merge at module level, no TensorFlow) and op "
                                   "(fpdiff upfirdn2d); the rest is sony/fp-diffusion as published")
    except Exception as exc:
        out["original_error"] = f"{type(exc).__name__}: {exc}"
        out["original_traceback"] = traceback.format_exc()[-2000:]
    times = interleaved(fns, a.device, a.repeats)
    med = {k: v["median_s"] for k, v in times.items()}
    out["times"] = times
    out["multiples_of_own_dsm"] = {k: med[k] / med[k.split("/")[0] + "/dsm"] for k in med}
    if "original/fp" in med:
        out["original_fp_over_ours"] = {"finite_difference": med["original/fp"] / med["fpdiff/fp_finite_difference"],
                                        "autodiff": med["original/fp"] / med["fpdiff/fp_autodiff"]}
        out["target"] = {"rule": "DSM + score-FPE at least 2x faster than the original step at equal settings",
                         "met_equal_settings_fd": out["original_fp_over_ours"]["finite_difference"] >= 2.0,
                         "met_autodiff": out["original_fp_over_ours"]["autodiff"] >= 2.0}
    for k in sorted(med):
        print(f"{k:28s} {med[k]*1000:9.1f} ms  ({out['multiples_of_own_dsm'][k]:.2f}x own DSM)")
    if "original_fp_over_ours" in out:
        print("original FP step / ours:", {k: round(v, 2) for k, v in out["original_fp_over_ours"].items()})
    elif "original_error" in out:
        print("original could not run:", out["original_error"])
    print(write("fp_step_ncsnpp", out, a.out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark the full-size score networks: forward and forward+backward time and peak memory.

NCSN++ cont. (VE) and DDPM++ cont. (VP) at CIFAR-10 size, ours and (where it can run) Score SDE's
own class on the same weights and inputs. Each measurement runs in a fresh child process so that
CPU peak memory (max RSS) belongs to that measurement alone; on CUDA the peak is
``torch.cuda.max_memory_allocated``.

    .venv/bin/python bench/models/bench_networks.py                     # CPU, batch 4
    python bench/models/bench_networks.py --device cuda --batch 48      # GPU fp32
    python bench/models/bench_networks.py --device cuda --batch 48 --tf32
    python bench/models/bench_networks.py --device cuda --batch 48 --amp bf16 --channels-last

Writes ``bench/results/models_<device>[_opts]_<UTC date>.json`` (or ``--out``) with the machine.

The original's ``op`` package compiles a CUDA extension when imported; a stand-in module gives it
fpdiff's plain-PyTorch ``upfirdn2d`` (same signature), so in the "original" rows everything except
that innermost FIR primitive is Score SDE's code. Set FPD_ORIGINAL_SCORE_SDE to its checkout
(default /work/orig/yang-song+score_sde_pytorch); without it only ours is measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "bench", "numerics"))

from common import machine  # noqa: E402  (the one machine record of the benchmarks)

MODELS = {"ve_ncsnpp": "ve/cifar10_ncsnpp_continuous", "vp_ddpmpp": "vp/cifar10_ddpmpp_continuous"}
ORIG_DIR = os.environ.get("FPD_ORIGINAL_SCORE_SDE", "/work/orig/yang-song+score_sde_pytorch")


# ---------------------------------------------------------------------------------------------
# one measurement (child process)

def _original_class():
    import importlib
    import types

    from fpdiff.models.fir import upfirdn2d
    stub = types.ModuleType("op")
    stub.upfirdn2d = upfirdn2d
    sys.modules["op"] = stub
    sys.path.insert(0, ORIG_DIR)
    return importlib.import_module("models.ncsnpp").NCSNpp


def _original_config(model_cfg, data_cfg):
    """The ml_collections-like object the original reads, from fpdiff's config dataclasses."""
    import dataclasses
    model_cfg, data_cfg = dataclasses.asdict(model_cfg), dataclasses.asdict(data_cfg)
    model = SimpleNamespace(**{k: (list(v) if isinstance(v, tuple) else v)
                               for k, v in model_cfg.items() if k != "kind"})
    model.name = "ncsnpp"
    return SimpleNamespace(model=model, data=SimpleNamespace(**data_cfg),
                           training=SimpleNamespace(continuous=True))


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(args) -> dict:
    import torch

    from fpdiff.models import architecture, build_network, count_parameters

    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
        torch.backends.cudnn.allow_tf32 = bool(args.tf32)
        torch.backends.cudnn.benchmark = True
    arch = architecture(MODELS[args.model])
    torch.manual_seed(0)
    ours = build_network(arch.model, arch.data)
    if args.impl == "original":
        cls = _original_class()
        net = cls(_original_config(arch.model, arch.data))
        net.load_state_dict(ours.state_dict(), strict=True)
    else:
        net = ours
    net = net.to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, 3, 32, 32, generator=g)
    if arch.data.centered:
        x = 2 * x - 1
    t = torch.rand(args.batch, generator=g) * (1 - 1e-5) + 1e-5
    labels = (0.01 * (50 / 0.01) ** t) if arch.sde == "ve" else 999 * t
    x = x.to(device).contiguous(memory_format=fmt)
    labels = labels.to(device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def autocast():
        if amp_dtype is None:
            return torch.autocast(device_type="cpu", enabled=False)
        return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu",
                              dtype=amp_dtype)

    def step():
        if args.mode == "fwd":
            with torch.no_grad(), autocast():
                return net(x, labels)
        if args.mode == "jvp":
            import torch.autograd.forward_ad as fwAD
            with autocast(), fwAD.dual_level():
                out = net(fwAD.make_dual(x, torch.ones_like(x)), labels)
                return fwAD.unpack_dual(out).tangent
        net.zero_grad(set_to_none=True)
        with autocast():
            out = net(x, labels)
        loss = out.float().square().mean()
        loss.backward()
        return out

    if args.mode == "fwd":
        net.eval()
    else:
        net.train()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(args.warmup):
        step()
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(args.repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    res = {
        "model": args.model, "preset": MODELS[args.model], "impl": args.impl, "mode": args.mode,
        "batch": args.batch, "amp": args.amp or "none", "tf32": bool(args.tf32),
        "channels_last": bool(args.channels_last),
        "parameters": count_parameters(ours),
        "seconds": sorted(times), "median_s": sorted(times)[len(times) // 2],
        "min_s": min(times), "images_per_s": args.batch / sorted(times)[len(times) // 2],
        "output_finite": bool(torch.isfinite(out.float()).all()),
    }
    if device.startswith("cuda"):
        res["peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
        res["peak_over_weights_gib"] = (torch.cuda.max_memory_allocated() - base) / 2 ** 30
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res["peak_rss_gib"] = rss / 2 ** 20            # KiB -> GiB (Linux)
        res["peak_rss_before_run_gib"] = rss0 / 2 ** 20
    if args.impl == "original" and args.mode == "fwd":
        with torch.no_grad(), autocast():
            ref = ours.to(device).to(memory_format=fmt).eval()(x, labels)
        diff = (out.float() - ref.float()).norm() / ref.float().norm()
        res["relative_difference_to_ours"] = float(diff)
    return res


# ---------------------------------------------------------------------------------------------
# driver

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 4 on CPU, 48 on CUDA")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--modes", default="fwd,fwdbwd", help="fwd, fwdbwd, jvp (forward-mode J·v)")
    ap.add_argument("--impls", default="ours,original")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 on CPU, 20 on CUDA")
    ap.add_argument("--warmup", type=int, default=None, help="default 1 on CPU, 5 on CUDA")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (48 if cuda else 4)
    args.repeats = args.repeats or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.amp = None if args.amp == "none" else args.amp

    if args.child:
        spec = json.loads(args.child)
        for k, v in spec.items():
            setattr(args, k, v)
        print(json.dumps(measure(args)))
        return 0

    impls = [i for i in args.impls.split(",") if i]
    if "original" in impls and not os.path.isfile(os.path.join(ORIG_DIR, "models", "ncsnpp.py")):
        print(f"original Score SDE code not found at {ORIG_DIR}; measuring ours only", file=sys.stderr)
        impls.remove("original")
    results, failures = [], []
    base_cmd = [sys.executable, os.path.abspath(__file__), "--device", args.device,
                "--batch", str(args.batch), "--amp", args.amp or "none",
                "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                "--threads", str(args.threads)]
    if args.tf32:
        base_cmd.append("--tf32")
    if args.channels_last:
        base_cmd.append("--channels-last")
    for model in [m for m in args.models.split(",") if m]:
        for mode in [m for m in args.modes.split(",") if m]:
            for impl in impls:
                spec = {"model": model, "mode": mode, "impl": impl}
                t0 = time.time()
                proc = subprocess.run(base_cmd + ["--child", json.dumps(spec)],
                                      capture_output=True, text=True)
                line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                if proc.returncode == 0 and line.startswith("{"):
                    r = json.loads(line)
                    results.append(r)
                    mem = r.get("peak_gib", r.get("peak_rss_gib"))
                    print(f"{model:10s} {mode:7s} {impl:8s} median {r['median_s'] * 1e3:9.1f} ms "
                          f"peak {mem:6.2f} GiB  ({time.time() - t0:.0f} s)", flush=True)
                else:
                    err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    failures.append({**spec, "error": err})
                    print(f"{model:10s} {mode:7s} {impl:8s} FAILED: {err}", flush=True)

    comparisons = []
    for r in results:
        if r["impl"] != "original":
            continue
        mine = [o for o in results if o["impl"] == "ours" and o["model"] == r["model"]
                and o["mode"] == r["mode"]]
        if mine:
            comparisons.append({"model": r["model"], "mode": r["mode"],
                                "speedup_ours_vs_original": r["median_s"] / mine[0]["median_s"]})
    doc = {
        "benchmark": "score networks (full-size CIFAR-10 NCSN++ cont. VE, DDPM++ cont. VP)",
        "machine": machine(args.device),
        "settings": {"batch": args.batch, "amp": args.amp or "none", "tf32": args.tf32,
                     "channels_last": args.channels_last, "repeats": args.repeats,
                     "warmup": args.warmup, "loss_for_backward": "mean(output²)",
                     "original_fir_primitive": "fpdiff upfirdn2d (the original's op/ needs a "
                                               "CUDA build at import)"},
        "results": results,
        "comparisons": comparisons,
        "failures": failures,
    }
    if args.out:
        out = args.out
    else:
        tag = args.device.replace(":", "")
        if args.amp:
            tag += f"_{args.amp}"
        if args.tf32:
            tag += "_tf32"
        if args.channels_last:
            tag += "_cl"
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = os.path.join(ROOT, "bench", "results", f"models_{tag}_b{args.batch}_{stamp}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(f"wrote {out}")
    return 1 if failures and not results else 0


if __name__ == "__main__":
    sys.exit(main())

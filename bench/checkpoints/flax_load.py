#!/usr/bin/env python3
"""Loading a full-size flax checkpoint: time and peak memory of read → restore → convert.

No real full-size score_flow file ships with fpdiff, so one is made here in the same format: the
flax tree of a full-size network (names and shapes from fpdiff's map, which the tests check
against the original code's trees), random weights, EMA and Adam moments, written as
``flax.serialization.to_bytes`` writes it (msgpack, arrays as extension type 1). Each phase runs
in a fresh child process, so its max RSS is its own.

    .venv/bin/python bench/checkpoints/flax_load.py                       # VP DDPM++ (61.8 M)
    .venv/bin/python bench/checkpoints/flax_load.py --preset ve/cifar10_ncsnpp_deep_continuous

Writes ``bench/results/flax_load_<preset>_<UTC date>.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "numerics"))
sys.path.insert(0, os.path.join(ROOT, "py"))

from common import machine, write  # noqa: E402


def make_file(preset: str, path: str) -> dict:
    """A flax State for the preset's full-size network, written in flax's format."""
    import msgpack
    import numpy as np
    from fpdiff import checkpoints as C
    from fpdiff.models import ARCHITECTURES, build_network, meta_init

    arch = ARCHITECTURES[preset]
    with meta_init():
        net = build_network(arch.model, arch.data)
    rng = np.random.default_rng(0)

    def ext(a: np.ndarray) -> msgpack.ExtType:
        return msgpack.ExtType(1, msgpack.packb([list(a.shape), a.dtype.name, a.tobytes()], use_bin_type=True))

    def tree(fn) -> dict:
        out: dict = {}
        for path_, shape in sorted(C.flax_layout(net).items()):
            node = out
            *mods, leaf = path_.split("/")
            for m in mods:
                node = node.setdefault(m, {})
            node[leaf] = fn(shape)
        return out

    leaves = lambda shape: ext(rng.standard_normal(shape, dtype=np.float32) * 0.05)  # noqa: E731
    state = {
        "step": ext(np.array(1_300_000, np.int32)),
        "optimizer": {"target": tree(leaves), "state": {
            "step": ext(np.array(1_300_000, np.int32)),
            "param_states": tree(lambda s: {"grad_ema": leaves(s), "grad_sq_ema": leaves(s)})}},
        "lr": ext(np.array(2e-4, np.float32)), "model_state": {},
        "ema_rate": ext(np.array(0.9999, np.float32)), "params_ema": tree(leaves),
        "rng": ext(np.zeros(2, np.uint32)),
    }
    with open(path, "wb") as fh:
        fh.write(msgpack.packb(state, use_bin_type=True))
    n = sum(int(np.prod(s)) for s in C.flax_layout(net).values())
    return {"parameters": n, "leaves": len(C.flax_layout(net)), "bytes": os.path.getsize(path)}


PHASE = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {py!r})

    def hwm_mb():  # this process's own peak (ru_maxrss would carry the parent's across fork+exec)
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024

    import torch
    from fpdiff import checkpoints as C
    from fpdiff.models import ARCHITECTURES, EMA, build_network
    p = ARCHITECTURES[{preset!r}]
    t0 = time.perf_counter()
    ck = C.load_checkpoint({path!r}, digest=False)
    t_load = time.perf_counter() - t0
    out = {{"load_s": t_load, "peak_after_load_mb": hwm_mb()}}
    if {phase!r} in ("restore", "convert"):
        net = build_network(p.model, p.data)
        opt = torch.optim.Adam(net.parameters(), lr=2e-4)
        ema = EMA(net.parameters(), decay=0.9999)
        t0 = time.perf_counter()
        if {phase!r} == "restore":
            C.restore(net, ck, weights="model", optimizer=opt, ema=ema)
            out["restore_s"] = time.perf_counter() - t0
        else:
            del ck, net, opt, ema   # convert reads the file itself
            C.convert({path!r}, {dst!r}, to="score_sde")
            out["convert_s"] = time.perf_counter() - t0
    out["peak_mb"] = hwm_mb()
    print(json.dumps(out))
""")


def run_phase(phase: str, preset: str, path: str, dst: str) -> dict:
    script = PHASE.format(py=os.path.join(ROOT, "py"), preset=preset, path=path, dst=dst, phase=phase)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="vp/cifar10_ddpmpp_continuous")
    ap.add_argument("--out")
    ap.add_argument("--make", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        print(json.dumps(make_file(args.preset, args.make)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "checkpoint_26")
        # made in a child too, so this process stays small while the phases run
        made = json.loads(subprocess.run(
            [sys.executable, __file__, "--make", path, "--preset", args.preset], check=True,
            capture_output=True, text=True).stdout)
        phases = {ph: run_phase(ph, args.preset, path, os.path.join(tmp, "converted.pth"))
                  for ph in ("load", "restore", "convert")}
    payload = {"benchmark": "flax_load", "preset": args.preset, "file": made, "phases": phases,
               "machine": machine("cpu"),
               "note": "load = read + check the msgpack state (no digest); restore = load + map onto "
                       "the network, EMA and Adam; convert = load + restore + write the PyTorch file. "
                       "peak_mb (VmHWM of the phase's own process) includes the Python/torch baseline (~230 MB)."}
    print(json.dumps(payload, indent=1))
    print("wrote", write(f"flax_load_{args.preset.replace('/', '_')}", payload, args.out))


if __name__ == "__main__":
    main()

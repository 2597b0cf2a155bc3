"""Whole-test-set bits/dim throughput: fpdiff's ``eval.bpd_dataset`` path (torchdiffeq dopri5 on the
device, batched, sharded units) vs Score SDE's ``likelihood.py`` (scipy RK45 on the host with a
NumPy round trip per evaluation) on the same images, the same dequantisation noise and the same
Rademacher probes, at rtol = atol = 1e-5. Reports images/s for both, the mean NFE, the time per
image-evaluation and the floor it implies (NFE × time per image-evaluation), the extrapolated time
of a full CIFAR-10 test pass (10,000 images, one repeat), and the per-image bpd difference.
Prepared for a GPU session (needs FPD_DATA_DIR and FPD_ORIGINAL_SCORE_SDE; a trained checkpoint
via --checkpoint gives realistic NFE — random weights do not).

    PYTHONPATH=py python bench/scale/bpd_gpu.py --arch ve_ncsnpp --precision fp32 --images 256 --batch 128"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "bench", "numerics"))
sys.path.insert(0, os.path.join(ROOT, "py", "tests"))  # _resolve: experiments resolved by the TS DSL

from common import machine, write  # noqa: E402

from fpdiff import checkpoints as ck  # noqa: E402
from fpdiff import config as C  # noqa: E402
from _resolve import resolved  # noqa: E402
from fpdiff.data import load_images  # noqa: E402
from fpdiff.evaluation.images import model_space  # noqa: E402
from fpdiff.derivatives import sample_probes  # noqa: E402
from fpdiff.divergence import divergence_eval  # noqa: E402
from fpdiff.evaluation import bpd_dataset as B  # noqa: E402
from fpdiff.evaluation.shards import WorkDir  # noqa: E402
from fpdiff.models import build_network  # noqa: E402
from fpdiff.score import score_model  # noqa: E402
from fpdiff.sde import make_sde  # noqa: E402

ARCH = {"ve_ncsnpp": ({"kind": "ve"}, {"kind": "ncsnpp"}), "vp_ddpmpp": ({"kind": "vp"}, {"kind": "ddpmpp"})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(ARCH), default="ve_ncsnpp")
    ap.add_argument("--precision", choices=("fp32", "tf32"), default="fp32")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--skip-original", action="store_true")
    ns = ap.parse_args()
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = ns.precision == "tf32"
    sde_cfg, model_cfg = ARCH[ns.arch]
    exp = C.experiment_from_wire(resolved({"name": "bench/bpd", "sde": sde_cfg, "model": model_cfg, "data": {"kind": "cifar10"},
                                  "loss": {"terms": [{"kind": "dsm"}]}}))
    torch.manual_seed(0)
    net = build_network(exp.model, exp.data).to(dev).eval()
    if ns.checkpoint:
        ck.restore(net, ck.load_checkpoint(ns.checkpoint), weights="ema")
    model = score_model(net, make_sde(exp.sde), exp.model)
    images = load_images(exp.data, "test").images[: ns.images]
    tol = dict(rtol=ns.rtol, atol=ns.atol)
    with tempfile.TemporaryDirectory() as tmp:
        wd = WorkDir(tmp, {"bench": 1})
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = B.dataset_bpd(model, images, wd, batch_size=ns.batch, seed=0, device=dev, **tol)
        torch.cuda.synchronize()
        ours_s = time.perf_counter() - t0
        recs = wd.finished()
    ours = np.concatenate([recs[i]["bpd"] for i in sorted(recs)])
    # time per image-evaluation: one drift + Hutchinson divergence at the batch size
    x = model_space(images[: ns.batch], False, dev)
    v = sample_probes(x, 1, "rademacher")
    t = torch.full((x.shape[0],), 0.5, device=dev)
    for _ in range(3):
        divergence_eval(model, x, t, v)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    for _ in range(10):
        divergence_eval(model, x, t, v)
    torch.cuda.synchronize()
    per_img_eval = (time.perf_counter() - t1) / 10 / x.shape[0]
    out = {"ours": {"seconds": ours_s, "images_per_s": ns.images / ours_s, "bpd": res["bpd"], "nfe_mean": res["nfe"]["mean"]},
           "seconds_per_image_evaluation": per_img_eval,
           "floor_seconds_per_image": res["nfe"]["mean"] * per_img_eval,
           "full_cifar10_test_pass_s": 10000 / (ns.images / ours_s)}
    orig_dir = os.environ.get("FPD_ORIGINAL_SCORE_SDE")
    if not ns.skip_original and orig_dir and os.path.isfile(os.path.join(orig_dir, "likelihood.py")):
        sys.path.insert(0, orig_dir)
        import likelihood as OL  # noqa: E402
        import sde_lib  # noqa: E402

        osde = sde_lib.VESDE(0.01, 50, 1000) if sde_cfg["kind"] == "ve" else sde_lib.VPSDE(0.1, 20, 1000)
        fn = OL.get_likelihood_fn(osde, lambda z: z, "Rademacher", **tol)
        vals, t0 = [], time.perf_counter()
        for u in range(0, ns.images, ns.batch):
            unit = u // ns.batch
            g = B.unit_generator(0, unit, dev)
            xb = model_space(images[u:u + ns.batch], False, dev)
            xd = (255.0 * xb + torch.rand(xb.shape, generator=g, device=dev)) / 256.0
            probe = sample_probes(xd, 1, "rademacher", g)[0]
            real = torch.randint_like
            torch.randint_like = lambda data, low=0, high=2: (probe + 1) / 2
            try:
                bpd, _z, _nfe = fn(net, xd)
            finally:
                torch.randint_like = real
            vals.append(bpd.cpu().numpy())
        torch.cuda.synchronize()
        orig_s = time.perf_counter() - t0
        orig = np.concatenate(vals)
        out["original"] = {"seconds": orig_s, "images_per_s": ns.images / orig_s, "bpd": float(orig.mean())}
        out["speedup"] = orig_s / ours_s
        out["max_abs_bpd_diff_per_image"] = float(np.abs(orig - ours).max())
    print(out)
    print("wrote", write(f"scale_bpd_{ns.arch}_{ns.precision}", {"machine": machine(dev), "args": vars(ns), "results": out}))


if __name__ == "__main__":
    main()

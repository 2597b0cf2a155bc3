#!/usr/bin/env python3
"""ODE likelihood on the 2-D toy: fpdiff (torchdiffeq dopri5 on the model's device, exact divergence
by one forward-mode pass) against the original approach (mle_score_ode `toy.py` `ode_likelihood`:
scipy `solve_ivp` RK45 with a NumPy round trip per evaluation and a reverse-mode Jacobian loop),
same network weights, same points, same tolerances.

    .venv/bin/python bench/numerics/likelihood_toy.py                 # CPU
    python bench/numerics/likelihood_toy.py --device cuda --n 20000   # GPU

The toy network (docs/maths.md §7.1 architecture) is first trained for --train-steps DSM steps on the
checkerboard so that the flow is not trivial. The original code runs from its checkout
(FPD_ORIGINAL_MLE_SCORE_ODE, default /work/orig/LuChengTHU+mle_score_ode); if it cannot be loaded
the JSON says so and only fpdiff is timed. Writes bench/results/likelihood_toy_<device>_<date>.json.
"""

from __future__ import annotations

import time
import traceback

from common import arguments, load_original_toy, machine, parse, sync, wire_loss, write


def main() -> None:
    ap = arguments()
    ap.add_argument("--n", type=int, default=5000, help="points in the one batched ODE solve")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = parse(ap)

    import torch

    from fpdiff.likelihood import ode_likelihood
    from fpdiff.models import ToyScoreMLP
    from fpdiff.score import NetworkScore
    from fpdiff.sde import VESDE
    from fpdiff.toys import sample_toy

    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    net = ToyScoreMLP(dim=2).to(dev)
    sde = VESDE(0.01, 50.0)
    model = NetworkScore(net, sde, param="eps", label="t")
    loss = wire_loss([{"kind": "dsm", "weighting": "conventional", "reduce": "mean"}])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.perf_counter()
    for _ in range(a.train_steps):
        x0 = sample_toy("checkerboard", 5000, generator=g).to(dev)
        res = loss(model, x0)
        opt.zero_grad()
        res.total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    train_s = time.perf_counter() - t0
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = sample_toy("checkerboard", a.n, generator=torch.Generator().manual_seed(a.seed + 1)).to(dev)

    out = {"machine": machine(a.device), "config": vars(a), "train_seconds": train_s,
           "final_dsm_loss": float(res.total.detach())}

    def ours():
        return ode_likelihood(model, x, rtol=a.rtol, atol=a.atol, method="dopri5", divergence="exact", eps=1e-5)

    fns = {"fpdiff": ours}
    try:
        ns = load_original_toy()
        ns["SDE_TYPE"] = "VE"
        ns["method"] = "score_eps"
        ns["x_dim"] = 2
        ns["device"] = dev
        orig_net = ns["ScoreNetwork"](encoder_layers=[128, 128], pos_dim=64, decoder_layers=[512, 512], x_dim=2,
                                      act_fn=torch.nn.SiLU).to(dev)
        orig_net.load_state_dict(net.state_dict(), strict=True)  # same names, same weights
        orig_net.eval()
        for p in orig_net.parameters():
            p.requires_grad_(False)
        score_fn, div_fn = ns["get_score_fn_by_model"](orig_net)
        calls = {"n": 0}

        def counted_score(xx, tt):
            calls["n"] += 1
            return score_fn(xx, tt)

        def original():
            calls["n"] = 0
            return ns["ode_likelihood"](counted_score, div_fn, x.clone(), ns["START_TIME"], rtol=a.rtol, atol=a.atol,
                                        method="RK45")

        fns["original"] = original
    except Exception as exc:  # recorded, not hidden
        out["original"] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        print("original could not run:", exc)

    # repeats in rotation, so that load from other processes hits both alike
    secs: dict[str, list[float]] = {k: [] for k in fns}
    results: dict[str, object] = {}
    for _ in range(a.repeats):
        for k, fn in fns.items():
            sync(a.device)
            t1 = time.perf_counter()
            results[k] = fn()
            sync(a.device)
            secs[k].append(time.perf_counter() - t1)
    r = results["fpdiff"]
    ours_s = min(secs["fpdiff"])
    out["fpdiff"] = {"seconds": ours_s, "all_seconds": secs["fpdiff"], "nfe": r.nfe,
                     "nll": float(-r.logp.mean()), "solver": "torchdiffeq dopri5",
                     "divergence": "exact (one forward + one vectorised backward pass)"}
    print(f"fpdiff: {ours_s:.2f}s nfe={r.nfe} nll={out['fpdiff']['nll']:.5f}", flush=True)
    if "original" in fns:
        orig_s = min(secs["original"])
        lp = torch.as_tensor(results["original"]).reshape(-1).double()
        orig_nll = float(-lp.mean())
        out["original"] = {"seconds": orig_s, "all_seconds": secs["original"], "nll": orig_nll, "nfe": calls["n"],
                           "solver": "scipy solve_ivp RK45 (NumPy round trip per evaluation)",
                           "divergence": "exact (reverse-mode Jacobian, loop over D, separate forward)"}
        d = r.logp.double().cpu() - lp
        out["speedup"] = orig_s / ours_s
        out["speedup_per_nfe"] = (orig_s / max(calls["n"], 1)) / (ours_s / r.nfe)
        out["abs_delta_nll_mean"] = abs(out["fpdiff"]["nll"] - orig_nll)
        out["abs_delta_logp_max_per_point"] = float(d.abs().max())
        out["target"] = {"speedup_at_least": 3.0, "abs_delta_nll_below": 0.01,
                         "met": bool(out["speedup"] >= 3.0 and out["abs_delta_nll_mean"] < 0.01)}
        print(f"original: {orig_s:.2f}s nfe={calls['n']} nll={orig_nll:.5f}  speedup {out['speedup']:.2f}x  "
              f"|dNLL| {out['abs_delta_nll_mean']:.2e} (max per point {out['abs_delta_logp_max_per_point']:.2e})")
    out["load_average_after"] = [round(v, 2) for v in __import__("os").getloadavg()]
    print(write("likelihood_toy", out, a.out))


if __name__ == "__main__":
    main()

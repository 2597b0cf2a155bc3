#!/usr/bin/env python3
"""Cost of one training step on the 2-D toy (docs/maths.md §7.1 network, VE, checkerboard, batch 5000): DSM,
error-bounded order 2 and order 3 (exact form, the toy presets), DSM + score-FPE, by fpdiff, side by
side with the original toy code's steps (mle_score_ode `toy.py` `loss_fn` for `score_eps`,
`score_eps_second_jac`, `score_eps_third`), run in rotation in one process on the same machine.

A step = draw the batch, evaluate the loss, backward, clip the gradient norm at 1, Adam update.

    .venv/bin/python bench/numerics/loss_cost_toy.py --repeats 5
    python bench/numerics/loss_cost_toy.py --device cuda --repeats 20

Writes bench/results/loss_cost_toy_<device>_<date>.json. The original runs from its checkout
(FPD_ORIGINAL_MLE_SCORE_ODE); if it cannot, the JSON records why and only fpdiff is timed.
"""

from __future__ import annotations

import traceback

from common import arguments, interleaved, load_original_toy, machine, parse, train_step, wire_loss, write

PRESETS = {
    "dsm": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"}],
    "order2": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"},
               {"kind": "highOrder", "order": 2, "parts": ["frobenius"], "lambdas": {"second": 0.5, "third": 0.1},
                "estimator": "exact"}],
    "order3": [{"kind": "dsm", "weighting": "conventional", "reduce": "mean"},
               {"kind": "highOrder", "order": 3, "parts": ["frobenius"], "lambdas": {"second": 0.5, "third": 0.1},
                "estimator": "exact"}],
    "dsm+fpe": [{"kind": "dsm", "weighting": "likelihood", "reduce": "mean"},
                {"kind": "scoreFpe", "mode": "both", "alpha": 0.15, "beta": 0.01, "m": 2, "weighting": "ll",
                 "points": "pert", "dt": "autodiff", "div": "exact"}],
}
ORIGINAL = {"dsm": "score_eps", "order2": "score_eps_second_jac", "order3": "score_eps_third"}


def main() -> None:
    ap = arguments()
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-original", action="store_true")
    a = parse(ap)

    import torch

    from fpdiff.models import ToyScoreMLP
    from fpdiff.score import NetworkScore
    from fpdiff.sde import VESDE
    from fpdiff.toys import sample_toy

    dev = torch.device(a.device)
    torch.manual_seed(0)
    net = ToyScoreMLP(dim=2).to(dev)
    model = NetworkScore(net, VESDE(0.01, 50.0), param="eps", label="t")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    dgen = torch.Generator(device=dev).manual_seed(2)

    def batch():
        return sample_toy("checkerboard", a.batch, generator=gen).to(dev)

    fns = {f"fpdiff/{k}": train_step(wire_loss(terms), model, opt, batch, dgen) for k, terms in PRESETS.items()}
    out = {"machine": machine(a.device), "config": vars(a), "presets": PRESETS}
    if not a.no_original:
        try:
            ns = load_original_toy()
            ns["device"] = dev
            ns["batch_size"] = a.batch
            ns["SDE_TYPE"] = "VE"
            ns["x_dim"] = 2
            onet = ns["ScoreNetwork"](encoder_layers=[128, 128], pos_dim=64, decoder_layers=[512, 512], x_dim=2,
                                      act_fn=torch.nn.SiLU).to(dev)
            onet.load_state_dict(net.state_dict())
            oopt = torch.optim.Adam(onet.parameters(), lr=1e-3)

            def orig(method):
                def step():
                    ns["method"] = method
                    loss, *_ = ns["loss_fn"](onet, 0)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(onet.parameters(), 1.0)
                    oopt.step()
                    oopt.zero_grad()
                return step

            for k, m in ORIGINAL.items():
                fns[f"original/{k}"] = orig(m)
        except Exception as exc:
            out["original_error"] = f"{type(exc).__name__}: {exc}"
            out["original_traceback"] = traceback.format_exc()[-2000:]
    times = interleaved(fns, a.device, a.repeats)
    out["times"] = times
    med = {k: v["median_s"] for k, v in times.items()}
    out["multiples_of_own_dsm"] = {k: med[k] / med[k.split("/")[0] + "/dsm"] for k in med}
    if "original/dsm" in med:
        out["ours_over_original"] = {k: med[f"fpdiff/{k}"] / med[f"original/{k}"] for k in ORIGINAL}
        out["target"] = {"rule": "each high-order step in at most half the original's time",
                         "order2_met": out["ours_over_original"]["order2"] <= 0.5,
                         "order3_met": out["ours_over_original"]["order3"] <= 0.5}
    for k in sorted(med):
        print(f"{k:22s} {med[k]*1000:8.1f} ms  ({out['multiples_of_own_dsm'][k]:.2f}x own DSM)")
    if "ours_over_original" in out:
        print("ours / original:", {k: round(v, 3) for k, v in out["ours_over_original"].items()})
    print(write("loss_cost_toy", out, a.out))


if __name__ == "__main__":
    main()

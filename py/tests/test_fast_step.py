"""The CUDA-graph training step (fpdiff.fast_step) against the plain step (fpdiff.train.train_step).

The graph itself needs a GPU (bench/engine/step_graph.py compares both there); on the CPU these
tests run the captured step's logic eagerly on its static buffers — the draws made outside, the
body, the finite check, multi-tensor Adam and EMA — and require the same losses, gradient norms,
parameters, optimiser state and EMA as the plain step, step by step."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

import _resolve as resolve
from fpdiff import fast_step as F
from fpdiff import train as T
from fpdiff.data import STREAM_LOSS, make_batches, step_generator
from fpdiff.models import EMA

TINY_MLP = {"kind": "mlp", "embedDim": 16, "timeHidden": [32], "xHidden": [32], "width": 32, "hidden": [64]}
DSM = {"kind": "dsm", "weighting": "conventional", "reduce": "mean"}
ORDER3 = {"kind": "highOrder", "order": 3, "parts": ["frobenius"], "lambdas": {"second": 0.5, "third": 0.1}, "estimator": "exact"}
FPE = {"kind": "scoreFpe", "mode": "both", "alpha": 0.15, "beta": 0.01, "m": 2, "weighting": "ll", "div": "exact"}
FPE_HUTCH = dict(FPE, div="hutchinson")


def toy(terms, *, dataset="checkerboard", warmup=0, clip=1.0, cuda_graph=False, n_iters=6):
    return resolve.experiment({
        "name": "toy/fast",
        "sde": {"kind": "ve"},
        "model": dict(TINY_MLP),
        "data": {"kind": "toy", "dataset": dataset},
        "loss": {"terms": terms},
        "optim": {"kind": "adam", "lr": 1e-3, "warmup": warmup, "gradClip": clip},
        "training": {"batchSize": 64, "nIters": n_iters, "logFreq": 1, "snapshotFreq": n_iters,
                     "snapshotFreqForPreemption": n_iters, "seed": 9, "cudaGraph": cuda_graph},
    })


def run_steps(state, step, n):
    batches = make_batches(state.experiment.data, 64, 9)
    gen = torch.Generator()
    out = []
    for k in range(n):
        step_generator(9, k, STREAM_LOSS, generator=gen)
        r = step(state, batches.batch(k), gen)
        out.append((r.metrics(k), r.ok))
    return out


@pytest.mark.parametrize("terms,dataset", [
    ([DSM], "checkerboard"),
    ([DSM, ORDER3], "checkerboard"),
    ([DSM, FPE], "checkerboard"),
    ([DSM, ORDER3], "mog1d"),
    ([{"kind": "dsm", "weighting": "likelihood", "importanceSampling": True, "reduce": "sum"}, FPE], "mog1d"),
])
@pytest.mark.parametrize("warmup,clip", [(0, 1.0), (3, -1.0)])
def test_captured_logic_makes_the_plain_steps_updates(terms, dataset, warmup, clip):
    exp = toy(terms, dataset=dataset, warmup=warmup, clip=clip)
    plain = T.build_state(exp)
    fast = T.build_state(exp)
    a = run_steps(plain, T.train_step, 5)
    b = run_steps(fast, F.CapturedStep(fast, backend="eager"), 5)
    for (ma, oka), (mb, okb) in zip(a, b):
        assert oka and okb
        # on the CPU the same kernels run in the same order: equal to the last bit
        assert mb["loss"] == ma["loss"] and mb["terms"] == ma["terms"] and mb["gradNorm"] == ma["gradNorm"]
        assert mb["lr"] == ma["lr"]
    assert plain.step == fast.step == 5
    for p, q in zip(plain.network.parameters(), fast.network.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
    for s, r in zip(plain.ema.shadow_params, fast.ema.shadow_params):
        torch.testing.assert_close(r, s, rtol=0, atol=0)
    assert plain.ema.num_updates == fast.ema.num_updates
    sa, sb = plain.optimizer.state_dict()["state"], fast.optimizer.state_dict()["state"]
    for i in sa:
        torch.testing.assert_close(sb[i]["exp_avg"], sa[i]["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(sb[i]["exp_avg_sq"], sa[i]["exp_avg_sq"], rtol=0, atol=0)


def test_draws_match_the_loss_expressions_own():
    for terms in ([DSM], [{"kind": "dsm", "weighting": "likelihood", "importanceSampling": True, "reduce": "sum"}]):
        state = T.build_state(toy(terms))
        x0 = make_batches(state.experiment.data, 64, 9).batch(0)
        g1 = torch.Generator().manual_seed(3)
        g2 = torch.Generator().manual_seed(3)
        batch = state.loss.draw(state.score, x0, generator=g1)
        t, z = F.draw_tz(state.loss, state.sde, x0, g2)
        assert torch.equal(t, batch.t) and torch.equal(z, batch.z)
        assert torch.equal(g1.get_state(), g2.get_state())


def test_multi_tensor_ema_equals_the_ema_class():
    params = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(7))]
    a = EMA(params, decay=0.999)
    b = copy.deepcopy(a)
    for _ in range(4):
        with torch.no_grad():
            for p in params:
                p.add_(0.1 * torch.randn_like(p))
        a.update(params)
        F.ema_update_foreach(b, params)
    assert a.num_updates == b.num_updates
    for s, r in zip(a.shadow_params, b.shadow_params):
        assert torch.equal(s, r)


def test_a_loss_with_extra_draws_is_refused_before_anything_changes():
    state = T.build_state(toy([DSM, FPE_HUTCH]))
    before = [p.detach().clone() for p in state.network.parameters()]
    step = F.CapturedStep(state, backend="eager")
    x0 = make_batches(state.experiment.data, 64, 9).batch(0)
    with pytest.raises(F.CaptureRefused, match="beyond"):
        step(state, x0, torch.Generator().manual_seed(0))
    assert state.step == 0
    assert all(torch.equal(p, q) for p, q in zip(before, state.network.parameters()))


def test_a_network_with_dropout_is_refused():
    net = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.1), nn.Linear(4, 2))
    fake = SimpleNamespace(network=net, device=torch.device("cpu"))
    with pytest.raises(F.CaptureRefused, match="dropout"):
        F.CapturedStep(fake, backend="eager")


def test_the_graph_needs_cuda_and_training_says_so_then_runs_plain(tmp_path):
    state = T.build_state(toy([DSM]))
    with pytest.raises(F.CaptureRefused, match="CUDA"):
        F.CapturedStep(state, backend="cuda_graph")
    events = []
    asked, _ = T.train(toy([DSM], cuda_graph=True), str(tmp_path / "a"), callback=events.append)
    warn = [e["message"] for e in events if e["type"] == "warning"]
    assert any("training.cudaGraph" in m and "CUDA device" in m for m in warn)
    plain, _ = T.train(toy([DSM]), str(tmp_path / "b"))
    for p, q in zip(asked.network.parameters(), plain.network.parameters()):
        assert torch.equal(p, q)


def test_non_finite_loss_is_not_applied():
    exp = toy([DSM])
    state = T.build_state(exp)
    step = F.CapturedStep(state, backend="eager")
    x0 = make_batches(exp.data, 64, 9).batch(0)
    before = [p.detach().clone() for p in state.network.parameters()]
    r = step(state, x0 * float("nan"), torch.Generator().manual_seed(0))
    assert not r.ok and state.step == 0
    assert all(torch.equal(p, q) for p, q in zip(before, state.network.parameters()))

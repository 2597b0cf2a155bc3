"""The training step with its loss, backward pass and gradient clipping captured in a CUDA graph.

A toy step on a GPU is launch-bound: a 0.5M-parameter MLP at batch 5000 does ~18 GFLOP of DSM
work, which an H100 finishes far faster than the CPU can issue the few hundred kernels of the
forward, backward (and, for the high-order and score-FPE losses, double-backward and forward-mode)
passes. Replaying one captured CUDA graph issues them all at once (torch.cuda.graphs, torch ≥ 1.10,
so the same code serves torch 1.13 and 2.x).

What is captured and what is not, so that the result equals the plain step (`train.train_step`):
- the random draws (t, z) are made outside the graph with the run's loss generator, in the same
  order as `LossExpression.draw`, and copied into static buffers; a loss that draws anything else
  (Hutchinson probes, 'random' points) is refused at construction, as is a network with dropout;
- inside: zero grads, the loss on the static (x0, t, z), backward, clip_grad_norm_, the finite
  check — all device-side, no host sync;
- outside: one sync for the finite check (the plain step has the same one), then Adam (with
  multi-tensor kernels) and the EMA update (the same arithmetic as `EMA.update`, multi-tensor) — so
  learning-rate warm-up and the EMA's growing decay need no re-capture.

`backend="eager"` runs the same static-buffer step without a graph: the CPU tests use it to check
the step's logic equals the plain step's bit for bit; the graph itself needs a GPU (bench/engine).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from .losses import LossResult

Tensor = torch.Tensor


def draw_tz(expr: Any, sde: Any, x0: Tensor, generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
    """The (t, z) that ``expr.draw(model, x0, generator=generator)`` would draw, in its order."""
    b = x0.shape[0]
    if expr.importance_sampling:
        t = sde.importance_sample_t(b, expr.eps, generator=generator, device=x0.device, dtype=x0.dtype)
    else:
        u = torch.rand(b, generator=generator, device=x0.device, dtype=x0.dtype)
        t = expr.eps + u * (sde.T - expr.eps)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return t, z


def capture_refusal(state: Any) -> Optional[str]:
    """Why this state's step cannot be captured (None when it can), from its network alone; the
    loss is checked on the first batch (`CapturedStep`)."""
    for m in state.network.modules():
        if isinstance(m, nn.Dropout) and m.p > 0:
            return "the network has dropout, whose masks would be frozen into the graph"
    return None


@torch.no_grad()
def ema_update_foreach(ema: Any, params: list[Tensor]) -> None:
    """`EMA.update` with multi-tensor kernels: s ← s − (1 − d)(s − p), d = min(decay, (1+n)/(10+n))."""
    decay = ema.decay
    if ema.num_updates is not None:
        ema.num_updates += 1
        decay = min(decay, (1 + ema.num_updates) / (10 + ema.num_updates))
    if len(params) != len(ema.shadow_params):
        raise ValueError(f"EMA tracks {len(ema.shadow_params)} parameters, got {len(params)}")
    diff = torch._foreach_sub(ema.shadow_params, params)
    torch._foreach_mul_(diff, 1.0 - decay)
    torch._foreach_sub_(ema.shadow_params, diff)


class CaptureRefused(RuntimeError):
    """The step cannot be captured; the message says why (the plain step then runs)."""


class CapturedStep:
    """A `train_step` replacement: ``step(state, x0, generator) -> StepResult``.

    backend: "cuda_graph" (capture on the first call, replay after) or "eager" (the same
    static-buffer step run directly; for tests and as the reference of the graph)."""

    def __init__(self, state: Any, backend: str = "cuda_graph", warmup: int = 3):
        if backend not in ("cuda_graph", "eager"):
            raise ValueError(f"backend must be 'cuda_graph' or 'eager', got {backend!r}")
        if backend == "cuda_graph" and state.device.type != "cuda":
            raise CaptureRefused(f"a CUDA graph needs a CUDA device, the run is on {state.device}")
        why = capture_refusal(state)
        if why:
            raise CaptureRefused(why)
        self.backend = backend
        self.warmup = int(warmup)
        self.params = [p for p in state.network.parameters()]
        self.trainable = [p for p in self.params if p.requires_grad]
        self.graph: Any = None
        self.static: Optional[dict[str, Tensor]] = None
        self.keys: list[str] = []
        self.weighted_keys: list[str] = []
        self.packed: Optional[Tensor] = None
        self.spy: Optional[torch.Generator] = None
        for group in state.optimizer.param_groups:
            if "foreach" in group:
                group["foreach"] = True  # a few multi-tensor kernels instead of ~10 per parameter

    # -- the captured body ---------------------------------------------------------------------
    def _body(self, state: Any) -> Tensor:
        s = self.static
        assert s is not None
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()
        # the loss draws nothing beyond (t, z) (checked in _prepare); its generator is never used
        res = state.loss(state.score, s["x0"], generator=self.spy, t=s["t"], z=s["z"])
        res.total.backward()
        clip = float(state.experiment.optim.grad_clip)
        if clip >= 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm=clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in self.params if p.grad is not None]))
        ok = torch.isfinite(res.total.detach()) & torch.isfinite(norm)
        self.keys = list(res.terms)
        self.weighted_keys = list(res.weighted)
        return torch.stack([res.total.detach(), norm.detach(), ok.to(norm.dtype),
                            *[v.detach() for v in res.terms.values()], *[v.detach() for v in res.weighted.values()]])

    def _check_draws(self, state: Any) -> None:
        """Refuse a loss that draws beyond (t, z): its extra draws would be frozen or differ."""
        s = self.static
        assert s is not None
        spy = torch.Generator(device=s["x0"].device).manual_seed(0)
        before = spy.get_state().clone()
        res = state.loss(state.score, s["x0"], generator=spy, t=s["t"], z=s["z"], create_graph=False)
        del res
        if not torch.equal(spy.get_state(), before):
            raise CaptureRefused("the loss draws random numbers beyond (t, z) (Hutchinson probes or random points)")

    def _prepare(self, state: Any, x0: Tensor, t: Tensor, z: Tensor) -> None:
        self.static = {"x0": x0.clone(), "t": t.clone(), "z": z.clone()}
        self.spy = torch.Generator(device=x0.device)
        self._check_draws(state)
        if self.backend == "eager":
            return
        dev = x0.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self._body(state)
        torch.cuda.current_stream(dev).wait_stream(side)
        for p in self.params:
            p.grad = None  # the captured backward allocates them in the graph's pool, and rewrites them at each replay
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.packed = self._body(state)
        self.graph = graph

    # -- one update ----------------------------------------------------------------------------
    def __call__(self, state: Any, x0: Tensor, generator: Optional[torch.Generator] = None):
        from .train import StepResult, learning_rate

        net = state.network
        net.train()
        t, z = draw_tz(state.loss, state.sde, x0, generator)
        if self.static is None or self.static["x0"].shape != x0.shape:
            self._prepare(state, x0, t, z)
        else:
            self.static["x0"].copy_(x0)
            self.static["t"].copy_(t)
            self.static["z"].copy_(z)
        if self.backend == "eager":
            packed = self._body(state)
        else:
            self.graph.replay()
            packed = self.packed.clone()  # type: ignore[union-attr]  # the next replay overwrites it
        total, norm, okf = packed[0], packed[1], packed[2]
        n = len(self.keys)
        terms = {k: packed[3 + i] for i, k in enumerate(self.keys)}
        weighted = {k: packed[3 + n + i] for i, k in enumerate(self.weighted_keys)}
        ok = bool(okf > 0)  # one sync per step, as the plain step
        cfg = state.experiment.optim
        lr = learning_rate(cfg, state.step, int(state.experiment.training.n_iters))
        if ok:
            for group in state.optimizer.param_groups:
                group["lr"] = lr
            state.optimizer.step()
            state.step += 1
            ema_update_foreach(state.ema, self.trainable)
        return StepResult(LossResult(total=total, terms=terms, weighted=weighted, t=self.static["t"].clone()), norm, lr, ok)  # type: ignore[index]


def step_function(state: Any, enabled: bool, emit: Callable[[dict], None] = lambda e: None) -> Callable:
    """The step a run uses: the captured one when ``training.cudaGraph`` asks for it and it can
    be built (on the first batch), else `train_step` — with a warning saying why."""
    from .train import train_step

    if not enabled:
        return train_step
    try:
        captured = CapturedStep(state, backend="cuda_graph")
    except CaptureRefused as exc:
        emit({"type": "warning", "message": f"training.cudaGraph: {exc}; the plain step runs"})
        return train_step
    fallback: dict[str, bool] = {"plain": False}

    def step(st: Any, x0: Tensor, generator: Optional[torch.Generator] = None):
        if fallback["plain"]:
            return train_step(st, x0, generator)
        if captured.graph is None:
            # the first call captures; if that fails, this very step runs plain from the same draws
            saved = generator.get_state() if generator is not None else None
            try:
                return captured(st, x0, generator)
            except (CaptureRefused, RuntimeError) as exc:
                fallback["plain"] = True
                for p in st.network.parameters():
                    p.grad = None
                if generator is not None and saved is not None:
                    generator.set_state(saved)
                emit({"type": "warning", "message": f"training.cudaGraph: {exc}; the plain step runs"})
                return train_step(st, x0, generator)
        return captured(st, x0, generator)

    return step

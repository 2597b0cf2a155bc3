"""∇·s for evaluation: the probability-flow ODE's log-density term (likelihood.py, Song et al.
2021 §4.3 and App. D.2). No autograd graph is kept for the parameters.

- exact: ∇·s = tr J, J = ∂s/∂x, from the D basis vectors e_i (small D only);
- Hutchinson: ∇·s ≈ mean_k ⟨v_k, J v_k⟩ with probes E[v vᵀ] = I (Hutchinson 1989).

Either by forward mode (J·v by dual numbers: no activations kept for a backward pass, the lowest
memory) or by one forward and one vectorised reverse pass (vᵀJ; faster on CPU under torch 1.13,
whose forward-mode matrix products are slower).
"""

from __future__ import annotations

import torch

from . import compat, derivatives
from .derivatives import sample_inner
from .score import ScoreModel

Tensor = torch.Tensor

MODES = ("auto", "forward", "reverse")


def _basis(x: Tensor) -> Tensor:
    """The D basis vectors as probes [D, B, ...] (exact trace), refused above MAX_EXACT_DIM."""
    b, d = x.shape[0], x[0].numel()
    if d > derivatives.MAX_EXACT_DIM:
        raise ValueError(f"exact divergence refused for D = {d} > {derivatives.MAX_EXACT_DIM}; use Hutchinson")
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return eye.unsqueeze(1).expand(d, b, d).reshape(d, *x.shape)


def divergence_forward(model: ScoreModel, x: Tensor, t: Tensor, probes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(s, ∇·s) by forward mode only: the batch is replicated k times with the probes (the D basis
    vectors without `probes`: exact) in one dual pass; ∇·s = Σ or mean of ⟨v, J v⟩."""
    t = t if t.dim() > 0 else t.expand(x.shape[0])
    b = x.shape[0]
    exact = probes is None
    v = _basis(x) if exact else probes
    k = v.shape[0]
    xr = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    with torch.no_grad():
        s, jv = compat.dual_jvp(lambda xx: model.score(xx, t.repeat(k)), (xr,), (v.reshape(k * b, *x.shape[1:]),))
    vjv = sample_inner(v, jv.reshape(k, *x.shape), lead=2)  # [k, B]
    return s.reshape(k, *x.shape)[0], (vjv.sum(0) if exact else vjv.mean(0))


def divergence_reverse(model: ScoreModel, x: Tensor, t: Tensor, probes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(s, ∇·s) by one forward and one vectorised backward pass with all probes (the D basis
    vectors without `probes`: exact) as cotangents; ∇·s = Σ or mean of ⟨v, vᵀJ⟩."""
    t = t if t.dim() > 0 else t.expand(x.shape[0])
    exact = probes is None
    v = _basis(x) if exact else probes
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        s = model.score(xx, t)
        vj = compat.batched_grad(s, xx, v, create_graph=False)
    vjv = sample_inner(v, vj, lead=2)
    return s.detach(), (vjv.sum(0) if exact else vjv.mean(0)).detach()


def divergence_eval(model: ScoreModel, x: Tensor, t: Tensor, probes: Tensor | None = None,
                    mode: str = "auto") -> tuple[Tensor, Tensor]:
    """(s, ∇·s) for evaluation. `mode` "forward" | "reverse" | "auto" (exact → reverse,
    Hutchinson → forward mode, which keeps no activations for a backward pass)."""
    if mode == "auto":
        mode = "reverse" if probes is None else "forward"
    if mode == "reverse":
        return divergence_reverse(model, x, t, probes)
    if mode == "forward":
        return divergence_forward(model, x, t, probes)
    raise ValueError(f"mode must be 'auto', 'reverse' or 'forward', got {mode!r}")

"""Differences between torch 1.13 and torch >= 2.0 that the numerics meet, kept in one place.

The numerics take derivatives in two ways:

- forward mode with dual numbers (`torch.autograd.forward_ad`), available and composable with
  reverse-mode autograd on both versions: the tangents it returns keep their autograd history, so
  a loss built from J·v or ∂t s backpropagates into the network parameters;
- reverse mode with several cotangents at once (`torch.autograd.grad(..., is_grads_batched=True)`),
  which vectorises the rows of a small Jacobian instead of looping over dimensions.

Neither `torch.func` (2.x) nor `functorch` (1.13) is used: importing functorch alone costs a third
of a second at every worker start (it pulls in sympy).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
import torch.autograd.forward_ad as fwad

TORCH_VERSION: tuple[int, int] = tuple(int(p) for p in torch.__version__.split(".")[:2])  # type: ignore[assignment]


@contextlib.contextmanager
def dual_level() -> Iterator[None]:
    """One forward-mode level; nested levels are not supported on torch 1.13, so never nest."""
    with fwad.dual_level():
        yield


def make_dual(primal: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
    return fwad.make_dual(primal, tangent)


def unpack_dual(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    p, d = fwad.unpack_dual(t)
    return p, d


def dual_jvp(fn: Callable, primals: Sequence[torch.Tensor], tangents: Sequence[torch.Tensor | None]):
    """(fn(*primals), directional derivative) by dual numbers.

    Unlike the functional transforms this accepts closures over `nn.Module`s whose parameters
    require grad, and the returned tangent stays differentiable with respect to them (and to any
    primal that requires grad), which is what the losses need. A `None` tangent means "constant".
    """
    with fwad.dual_level():
        duals = [p if v is None else fwad.make_dual(p, v) for p, v in zip(primals, tangents)]
        out = fn(*duals)
        primal_out, tangent_out = fwad.unpack_dual(out)
    if tangent_out is None:  # output independent of the perturbed inputs
        tangent_out = torch.zeros_like(primal_out)
    return primal_out, tangent_out


def batched_grad(
    output: torch.Tensor,
    inp: torch.Tensor,
    cotangents: torch.Tensor,
    *,
    create_graph: bool,
) -> torch.Tensor:
    """Stacked vector-Jacobian products: result[k] = cotangents[k]ᵀ · ∂output/∂inp.

    Uses `is_grads_batched` (vmap over the backward pass) on both torch versions; if an operator
    has no batching rule there, it falls back to one backward pass per cotangent.
    """
    try:
        (g,) = torch.autograd.grad(
            output, inp, grad_outputs=cotangents, create_graph=create_graph,
            retain_graph=True, is_grads_batched=True,
        )
        return g
    except RuntimeError:  # pragma: no cover - depends on operator coverage of the batching rules
        rows = [
            torch.autograd.grad(output, inp, grad_outputs=c, create_graph=create_graph, retain_graph=True)[0]
            for c in cotangents
        ]
        return torch.stack(rows, 0)


def fix_launch_streams(config) -> None:
    """torchrun's stream settings on torch 1.13 under Python ≥ 3.11.

    1.13 parses ``--redirects 0`` / ``--tee 0`` by iterating its ``Std`` IntFlag, and Python 3.11
    no longer yields the zero member when iterating a flag, so the parse returns None and the
    launch fails in ``to_map``. A None here means "no redirection", which is what we ask for."""
    from torch.distributed.elastic.multiprocessing import Std

    if getattr(config, "redirects", Std.NONE) is None:
        config.redirects = Std.NONE
    if getattr(config, "tee", Std.NONE) is None:
        config.tee = Std.NONE

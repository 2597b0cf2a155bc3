"""Ops of the models area: load a network (fresh or from a checkpoint), evaluate it, inspect,
save and convert checkpoints.

Schemas: ``src/protocol/ops/models.ts``. Models live in ``models(ctx.state)[handle]`` as
:class:`~fpdiff.ops.state.LoadedModel` (docs/contracts.md). Checkpoint problems are answered
BAD_REQUEST with a message that starts with the problem's code (``not_a_checkpoint``,
``corrupt_checkpoint``, ``unsafe_checkpoint``, ``architecture_mismatch``) and the full details on
the exception (``OpError.details``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from .. import checkpoints as CK
from .. import config as C
from ..files import atomic_path
from ..models import EMA, build_network
from .._generated import types as T
from ..protocol import BAD_REQUEST
from ..schema import to_wire
from . import OpContext, OpError, op
from .state import LoadedModel, get_model, models, resolve_device


@contextmanager
def _checkpoint_errors(field: str) -> Iterator[None]:
    """Checkpoint errors -> BAD_REQUEST naming the argument, with the details attached."""
    try:
        yield
    except FileNotFoundError as e:
        raise OpError(BAD_REQUEST, f"{field}: no such file: {e.filename or e}", field) from None
    except IsADirectoryError as e:
        raise OpError(BAD_REQUEST, f"{field}: is a directory: {e.filename or e}", field) from None
    except CK.CheckpointError as e:
        err = OpError(BAD_REQUEST, f"{field}: {e.code}: {e}", field)
        err.details = to_wire("$defs/CheckpointErrorDetails", e.to_dict())  # type: ignore[attr-defined]
        raise err from None


def _saved(s: CK.SavedCheckpoint) -> dict:
    return {"path": s.path, "step": s.step, "sha256": s.sha256, "bytes": s.bytes}


def _checkpoint_info(ck: CK.Checkpoint) -> dict:
    return {"path": os.path.abspath(ck.path) if ck.path else None, "sha256": ck.sha256,
            "bytes": ck.bytes, "step": ck.step, "format": ck.format,
            "container": ck.file.format if ck.file else None, "has_ema": ck.ema is not None,
            "has_optimizer": ck.optimizer is not None}


def _new_handle(state, wanted: str | None, name: str) -> str:
    reg = models(state)
    if wanted:
        return wanted
    base = name or "model"
    handle, i = base, 1
    while handle in reg:
        i += 1
        handle = f"{base}-{i}"
    return handle


def _build_loaded(exp: C.ExperimentConfig, path: str | None, device: torch.device,
                  seed: int | None, handle: str) -> LoadedModel:
    from ..sde import make_sde

    torch.manual_seed(exp.training.seed if seed is None else seed)
    net = build_network(exp.model, exp.data)
    ema, step, info = None, 0, None
    if path is not None:
        with _checkpoint_errors("args.checkpoint"):
            ck = CK.load_checkpoint(path)
            if ck.ema is not None:
                ema = EMA(net.parameters(), decay=float(ck.ema["decay"]))
            restored = CK.restore(net, ck, weights="model", ema=ema)
        step, info = ck.step or 0, _checkpoint_info(ck)
        info["warnings"] = list(restored.warnings)
    else:
        ema = EMA(net.parameters(), decay=exp.model.ema_rate)
    net = net.to(device).eval()
    if ema is not None:
        ema.to(device)
    lm = LoadedModel(handle=handle, experiment=exp, network=net, sde=make_sde(exp.sde), ema=ema,
                     step=step, source=os.path.abspath(path) if path else None)
    lm.checkpoint_info = info  # type: ignore[attr-defined]
    return lm


@op("model.load")
def model_load(args: T.ModelLoadArgs, ctx: OpContext) -> dict:
    """Build the experiment's network, fresh or restored strictly from a checkpoint; keep it by handle."""
    lm = _build_loaded(args.experiment, args.checkpoint, resolve_device(args.device), args.seed,
                       _new_handle(ctx.state, args.handle, args.experiment.name))
    models(ctx.state)[lm.handle] = lm
    return {**lm.describe(), "checkpoint": lm.checkpoint_info}  # type: ignore[attr-defined]


def _times(t_raw: Any, n: int, field: str = "args.t") -> torch.Tensor:
    if torch.is_tensor(t_raw):
        t = t_raw.reshape(-1)
    elif isinstance(t_raw, (int, float)) and not isinstance(t_raw, bool):
        t = torch.full((n,), float(t_raw))
    else:
        raise OpError(BAD_REQUEST, f"{field}: expected a tensor [B] or a number", field)
    if t.numel() == 1 and n != 1:
        t = t.expand(n)
    if t.shape[0] != n:
        raise OpError(BAD_REQUEST, f"{field}: {t.shape[0]} times for {n} inputs", field)
    return t


def _evaluate(lm: LoadedModel, weights: str, x: torch.Tensor, t: torch.Tensor, batch: int,
              ctx: OpContext) -> dict:
    """Network output (through a forward hook), score and labels, batch by batch, on the CPU."""
    sm = lm.score_model(weights)
    net = sm.network
    captured: list = []
    hook = net.register_forward_hook(lambda _m, _i, out: captured.append(out))
    outs, scores, labels = [], [], []
    dev, dtype = lm.device, next(net.parameters()).dtype
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch):
                ctx.check_cancelled()
                xb = x[i:i + batch].to(dev, dtype)
                tb = t[i:i + batch].to(dev, dtype)
                captured.clear()
                scores.append(sm.score(xb, tb).cpu())
                outs.append(captured[-1].cpu())
                labels.append(sm.labels(tb).cpu())
    finally:
        hook.remove()
    return {"output": torch.cat(outs), "score": torch.cat(scores), "labels": torch.cat(labels),
            "weights": weights if lm.ema is not None else "model", "step": lm.step}


@op("model.score")
def model_score(args: T.ModelScoreArgs, ctx: OpContext) -> dict:
    """The raw network output for the SDE's label and the score, at (x, t), in batches."""
    lm = get_model(ctx.state, args.model)
    return _evaluate(lm, args.weights, args.x, _times(args.t, args.x.shape[0]), args.batch_size, ctx)


def _read_inputs(path: str) -> tuple:
    """``x`` and ``t`` from a .pt (safe loading) or .npz (no pickles) file."""
    import numpy as np

    field = "args.input"
    if not os.path.isfile(path):
        raise OpError(BAD_REQUEST, f"{field}: no such file: {path}", field)
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
        except (ValueError, OSError) as e:
            raise OpError(BAD_REQUEST, f"{field}: cannot read {path} as .npz: {e}", field) from None
    else:
        with _checkpoint_errors(field):
            raw, _ = CK.safe_torch_load(path)
    if not isinstance(raw, dict) or "x" not in raw or "t" not in raw:
        raise OpError(BAD_REQUEST, f"{field}: {path} must hold 'x' and 't'", field)
    x, t = raw["x"], raw["t"]
    if not torch.is_tensor(x):
        raise OpError(BAD_REQUEST, f"{field}: 'x' is not an array", field)
    x = x.float() if not x.is_floating_point() else x
    t = _times(t if torch.is_tensor(t) else float(t), x.shape[0], field)
    return x, t


@op("ckpt.score")
def ckpt_score(args: T.CkptScoreArgs, ctx: OpContext) -> dict:
    """File to file: restore a checkpoint into the experiment's network, score x, t from a .pt/.npz, write .npz."""
    import numpy as np

    layout, out_path = args.layout, args.out
    x, t = _read_inputs(args.input)
    if layout == "nhwc":   # JAX's layout: the network takes NCHW, the file is written back as NHWC
        if x.dim() != 4:
            raise OpError(BAD_REQUEST, f"args.input: layout nhwc needs x [B, H, W, C], got {list(x.shape)}",
                          "args.layout")
        x = x.permute(0, 3, 1, 2)
    lm = _build_loaded(args.experiment, args.checkpoint, resolve_device(args.device), None, "ckpt.score")
    res = _evaluate(lm, args.weights, x, t, args.batch_size, ctx)
    back = (lambda a: a.permute(0, 2, 3, 1)) if layout == "nhwc" else (lambda a: a)
    out_path = os.path.abspath(out_path if out_path.endswith(".npz") else out_path + ".npz")
    with atomic_path(out_path, suffix=".npz") as tmp:
        np.savez(tmp, output=back(res["output"]).contiguous().numpy(),
                 score=back(res["score"]).contiguous().numpy(), labels=res["labels"].numpy(),
                 t=t.numpy())
    return {"out": out_path, "n": int(x.shape[0]), "shape": list(back(res["output"]).shape),
            "weights": res["weights"], "step": res["step"],
            "checkpoint": lm.checkpoint_info}  # type: ignore[attr-defined]


@op("ckpt.inspect")
def ckpt_inspect(args: T.CkptInspectArgs, ctx: OpContext) -> dict:
    """Format, step, sizes, EMA, optimiser, matching presets and sha256 of a checkpoint file."""
    with _checkpoint_errors("args.path"):
        return CK.inspect_checkpoint(args.path)


@op("ckpt.save")
def ckpt_save(args: T.CkptSaveArgs, ctx: OpContext) -> dict:
    """Write a loaded model in the original format (atomically): to a path, a snapshot or the meta file."""
    lm = get_model(ctx.state, args.model)
    path, workdir, snapshot, meta = args.path, args.workdir, args.snapshot, args.meta
    if (path is not None) == (workdir is not None):
        raise OpError(BAD_REQUEST, "args: give either path or workdir (with snapshot or meta)", "args.path")
    if workdir is not None and (snapshot is None) == (not meta):
        raise OpError(BAD_REQUEST, "args: with workdir give exactly one of snapshot: k or meta: true",
                      "args.snapshot")
    state = CK.checkpoint_state(lm.network, getattr(lm, "optimizer", None), lm.ema, lm.step,
                                ema_decay=lm.experiment.model.ema_rate)
    if path is not None:
        saved = CK.save_checkpoint(path, state)
        kind = "file"
    else:
        saved = CK.save_run_checkpoint(workdir, state, k=snapshot, meta=meta)
        kind = "meta" if meta else "snapshot"
    out = _saved(saved)
    out["kind"] = kind
    return out


@op("ckpt.convert")
def ckpt_convert(args: T.CkptConvertArgs, ctx: OpContext) -> dict:
    """Original format ⇄ plain state dict (safetensors or torch.save), EMA or raw weights."""
    exp = args.experiment
    with _checkpoint_errors("args.path"):
        saved = CK.convert(args.path, args.out, to=args.to, weights=args.weights,
                           model_cfg=exp.model if exp else None, data_cfg=exp.data if exp else None)
    return {**_saved(saved), "format": args.to}

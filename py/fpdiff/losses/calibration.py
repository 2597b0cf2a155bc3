"""Score-FPE weights given as shares of the loss at the start of training (docs/score-fpe-scale.md).

The vector term's size relative to DSM scales like D^(−m/2) (per-dimension DSM) or D^(−m/2−1)
(summed DSM) times a factor that depends on the SDE, the weighting and how wrong the network's
derivatives are — so one α means very different things on a 2-D toy and on CIFAR-10. A share
s = α·vector / L at the start (measured on the run's own first batches) means the same thing
at every D; `ScoreFPELoss.calibrate` asks for it and this module turns it into α (and β).

The measurement is a pure function of (training.seed, the start step, the model's weights): the
run's batches k = start … start + n − 1 and loss draws from a stream of their own. The result is
written to ``<workdir>/score_fpe_calibration.json`` and read back when the run resumes from its
meta checkpoint, so an interrupted run continues with the α it started with.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import torch

from ..data import step_generator, step_seed
from ..files import atomic_path
from .score_fpe import ScoreFPELoss, calibrated_weights

Tensor = torch.Tensor

CALIBRATION_FILE = "score_fpe_calibration.json"
STREAM_CALIBRATION = 11  # loss draws and dropout of the calibration batches (not a training stream)


def calibrated_terms(expr: Any) -> list[tuple[int, ScoreFPELoss]]:
    """(index, term) of the expression's score-FPE terms that ask for calibration."""
    return [(i, t) for i, t in enumerate(expr.terms) if isinstance(t, ScoreFPELoss) and t.calibrate is not None]


def measure_shares(expr: Any, model: Any, batches: list[Tensor], *, seed: int, start: int) -> dict[str, float]:
    """Mean over the batches of the rest of the loss (every weighted term but the score FPE's) and
    of the unweighted score-FPE vector and scalar terms, with one seeded draw per batch."""
    sums = {"rest": 0.0, "vector": 0.0, "scalar": 0.0}
    n = 0
    device = batches[0].device
    gen = torch.Generator(device=device)
    for j, x0 in enumerate(batches):
        k = start + j
        step_generator(seed, k, STREAM_CALIBRATION, generator=gen)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(step_seed(seed, k, STREAM_CALIBRATION + 1))  # dropout
            res = expr(model, x0, generator=gen, create_graph=False)
        fpe = float(res.weighted.get("score_fpe", torch.zeros(())).detach())
        sums["rest"] += float(res.total.detach()) - fpe
        sums["vector"] += float(res.terms.get("score_fpe.vector", torch.zeros(())).detach())
        sums["scalar"] += float(res.terms.get("score_fpe.scalar", torch.zeros(())).detach())
        n += 1
    return {k: v / n for k, v in sums.items()}


def calibrate(expr: Any, model: Any, batches: list[Tensor], *, seed: int, start: int) -> list[dict]:
    """Set α / β of every calibrated score-FPE term of ``expr``; returns one record per term."""
    records = []
    for index, term in calibrated_terms(expr):
        cal = term.calibrate
        m = measure_shares(expr, model, batches[: cal.batches], seed=seed, start=start)
        alpha, beta = calibrated_weights(cal, rest=m["rest"], vector=m["vector"], scalar=m["scalar"],
                                         alpha=term.alpha, beta=term.beta, mode=term.mode)
        term.alpha, term.beta = alpha, beta
        records.append({"term": index, "alpha": alpha, "beta": beta, "step": int(start),
                        "vectorShare": cal.vector_share, "scalarShare": cal.scalar_share,
                        "batches": cal.batches, "measured": m})
    return records


def _spec(term: ScoreFPELoss) -> dict:
    c = term.calibrate
    return {"vectorShare": c.vector_share, "scalarShare": c.scalar_share, "batches": c.batches}


def calibrate_run(state: Any, workdir: str, batches: Any, *, resumed: bool, record: bool = True,
                  emit: Callable[[dict], None] = lambda e: None) -> Optional[list[dict]]:
    """The training hook: on a resumed run, the α / β recorded in ``workdir``; otherwise measure
    them on the model as it starts and record them (when ``record``: rank 0 of a job). Emits one
    ``calibration`` event per term."""
    terms = calibrated_terms(state.loss)
    if not terms:
        return None
    path = os.path.join(workdir, CALIBRATION_FILE)
    records: Optional[list[dict]] = None
    if resumed and os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
        by_term = {int(r["term"]): r for r in saved.get("terms", [])}
        if all(i in by_term and all(by_term[i].get(k) == v for k, v in _spec(t).items()) for i, t in terms):
            for i, t in terms:
                t.alpha, t.beta = float(by_term[i]["alpha"]), float(by_term[i]["beta"])
            records = [dict(by_term[i], source="recorded") for i, _ in terms]
        else:
            emit({"type": "warning", "message": f"{path} was written for other calibrate settings: measuring again at step {state.step}"})
    elif resumed:
        emit({"type": "warning", "message": f"no {CALIBRATION_FILE} in {workdir}: calibrating the score-FPE weights at the resumed step {state.step}"})
    if records is None:
        n = max(t.calibrate.batches for _, t in terms)
        seed = int(state.experiment.training.seed)
        xs = [batches.batch(state.step + j, device=state.device) for j in range(n)]
        state.network.train()
        try:
            measured = calibrate(state.loss, state.score, xs, seed=seed, start=state.step)
        except ValueError as exc:  # nothing to take a share of, or a term that is 0 / not finite
            from ..train import TrainingError

            raise TrainingError(str(exc), f"experiment.loss.terms[{terms[0][0]}].calibrate") from None
        records = [dict(r, source="measured") for r in measured]
    if record and records[0]["source"] == "measured":
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"terms": [{k: v for k, v in r.items() if k != "source"} for r in records]}, fh, indent=1)
    for r in records:
        emit({"type": "calibration", **r})
    return records

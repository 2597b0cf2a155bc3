/**
 * Score-FPE weight: α ∈ {0, 0.05, 0.15, 0.5} × m ∈ {1, 2} on the toy checkerboard (VE, DSM +
 * score FPE, FP-Diffusion's other settings), each trained for the same budget, scored by the
 * ScoreODE NLL against the entropy floor and by the score-FPE residual it leaves.
 *
 *   fpd ablate ablations/fpe_weight.ts                       # about 20 min on 2 CPU cores
 *   fpd ablate ablations/fpe_weight.ts --param steps=5000 --param batch=5000 --device cuda
 */
import { defineAblation, toyExperiment, trainToy } from "../src/api/index.js";

export default defineAblation({
  name: "score-FPE weight × norm power",
  description:
    "DSM + score-FPE regulariser on the 2-D checkerboard (VE), the toy preset's setting: α weighs the vector residual " +
    "g(t)·‖r‖^m / D^m (α = 0 is plain DSM). NLL in nats by the probability-flow ODE on fresh points; the floor is " +
    "log 32 = 3.466. `residual` is the mean relative score-FPE residual over t ∈ {0.01, 0.1, 0.5}.",
  params: { data: "checkerboard", steps: 600, batch: 1000, nllPoints: 1000 },
  grid: { alpha: [0, 0.05, 0.15, 0.5], m: [1, 2] },
  async run(point, ctx) {
    const experiment = await toyExperiment(
      { data: ctx.params.data, method: "dsm_fpe", steps: ctx.params.steps, batchSize: ctx.params.batch },
      [`loss.terms[1].alpha=${point.alpha}`, `loss.terms[1].m=${point.m}`],
    );
    const scored = await trainToy(ctx.session, experiment, { runDir: ctx.pointDir, nllPoints: ctx.params.nllPoints, signal: ctx.signal });
    const fpe = await ctx.session.evaluate(scored.handle, { kind: "fpeResidual", t: [0.01, 0.1, 0.5], n: 500, seed: 4 }, { signal: ctx.signal });
    return {
      nll: scored.nll.nll,
      stderr: scored.nll.stderr,
      gap: scored.nll.gap ?? NaN,
      residual: fpe.relative.reduce((a, b) => a + b, 0) / fpe.relative.length,
      trainSeconds: scored.trainSeconds,
    };
  },
  plot: { x: "alpha", y: "nll", yerr: "stderr", series: ["m"], title: "ScoreODE NLL vs score-FPE weight", hline: { y: Math.log(32), label: "entropy floor log 32" } },
});

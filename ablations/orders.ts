/**
 * Orders 1 / 2 / 3 of error-bounded denoising score matching (Lu et al. 2022) on a toy, each with
 * the same budget, scored by the ScoreODE NLL against the entropy floor.
 *
 *   fpd ablate ablations/orders.ts                          # checkerboard, about 10 min on 2 CPU cores
 *   fpd ablate ablations/orders.ts --param data=mog1d       # the paper's Fig. 1 mixture
 */
import { defineAblation, toyExperiment, trainToy, type ToyMethod } from "../src/api/index.js";

const METHOD: Record<number, ToyMethod> = { 1: "dsm", 2: "order2", 3: "order3" };

export default defineAblation({
  name: "score-matching order",
  description:
    "The toy MLP trained with first-order DSM, + the second-order term (weight 0.5), + the second- and third-order terms " +
    "(0.5, 0.1), exact derivatives, as in the high-order paper's toy.py, for the same number of updates. NLL in nats by " +
    "the probability-flow ODE with the exact divergence on fresh points.",
  params: { data: "checkerboard", steps: 600, batch: 1000, nllPoints: 1000, seeds: 1 },
  grid: (p) => ({ order: [1, 2, 3], seed: Array.from({ length: p.seeds }, (_, i) => i) }),
  async run(point, ctx) {
    const experiment = await toyExperiment(
      { data: ctx.params.data, method: METHOD[point.order]!, steps: ctx.params.steps, batchSize: ctx.params.batch },
      [`training.seed=${42 + point.seed}`],
    );
    const scored = await trainToy(ctx.session, experiment, { runDir: ctx.pointDir, nllPoints: ctx.params.nllPoints, signal: ctx.signal });
    return {
      nll: scored.nll.nll,
      stderr: scored.nll.stderr,
      gap: scored.nll.gap ?? NaN,
      floor: scored.nll.floor ?? NaN,
      trainSeconds: scored.trainSeconds,
      secondsPerStep: scored.trainSeconds / Math.max(1, scored.train.steps),
    };
  },
  plot: { x: "order", y: "nll", yerr: "stderr", series: ["seed"], title: "ScoreODE NLL vs score-matching order", hline: (rows) => ({ y: Number(rows[0]?.floor), label: "entropy floor" }) },
});

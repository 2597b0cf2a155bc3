/**
 * Fine-tune one Score SDE checkpoint for a few steps with each loss (DSM, DSM + score FPE,
 * DSM + 2nd order, DSM + 2nd + 3rd order), then compare the models on a common yardstick: DSM
 * loss, score-FPE terms and residual on the same held-out points.
 *
 * Runs as is on the small original-format fixture (NCSN++ with nf = 8) and a synthetic data set in
 * CIFAR-10's format; it is meaningful on a real checkpoint and the real CIFAR-10:
 *
 *   fpd ablate ablations/finetune_losses.ts
 *   fpd ablate ablations/finetune_losses.ts --param checkpoint=exp/ve/cifar10_ncsnpp_continuous/checkpoints/checkpoint_26.pth \
 *       --param nf=128 --param data=/data/cifar-10-batches-py --param steps=2000 --param batch=48 --device cuda
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { defineAblation } from "../src/api/index.js";
import { loadExperiment } from "../src/dsl/load.js";

import { PROJECT_ROOT } from "../src/paths.js";

const FIXTURE = join(PROJECT_ROOT, "test", "fixtures", "reference", "ve_ncsnpp_small_seed0.pth");

const TIMES = [0.01, 0.1, 0.5];

const LOSSES = {
  dsm: { preset: "highorder/ve_cifar10_order1", set: [] as string[] },
  dsm_fpe: { preset: "fp/ve_cifar10", set: [] as string[] },
  order2: { preset: "highorder/ve_cifar10_order2", set: [] as string[] },
  order3: { preset: "highorder/ve_cifar10_order3", set: [] as string[] },
};

export default defineAblation({
  name: "fine-tuning losses",
  description:
    "One VE NCSN++ checkpoint fine-tuned for the same few steps with each loss (presets highorder/ve_cifar10_order1..3 " +
    "and fp/ve_cifar10). Every model is then evaluated (raw weights by default: a few steps barely move the EMA) on the " +
    "same held-out images and the same draws: the first-order DSM loss (conventional weighting), the score-FPE vector " +
    "and scalar terms, and the relative score-FPE residual at t ∈ {0.01, 0.1, 0.5}. `before` is the checkpoint itself.",
  params: { checkpoint: FIXTURE, nf: 8, data: "", steps: 5, batch: 4, evalPoints: 64, weights: "model" },
  grid: { loss: ["before", "dsm", "dsm_fpe", "order2", "order3"] },
  async run(point, ctx) {
    let data = ctx.params.data;
    if (!data) {
      data = join(ctx.outDir, "synthetic-cifar10");
      if (!existsSync(join(data, "test_batch"))) await ctx.session.request("data.synthetic", { path: data, imagesPerFile: 64, seed: 0 });
    }
    const spec = point.loss === "before" ? LOSSES.dsm : LOSSES[point.loss as keyof typeof LOSSES];
    const set = [
      `model.nf=${ctx.params.nf}`,
      `data.path=${resolve(data)}`,
      `training.batchSize=${ctx.params.batch}`,
      "training.snapshotFreq=1000000",
      "training.snapshotFreqForPreemption=1000000",
      "training.logFreq=1",
      ...spec.set,
    ];
    const { experiment } = await loadExperiment(spec.preset, { set });
    let handle: string;
    let seconds = 0;
    if (point.loss === "before") {
      handle = (await ctx.session.load(experiment, { checkpoint: ctx.params.checkpoint, handle: "before" })).handle;
    } else {
      const startStep = (await ctx.session.request("ckpt.inspect", { path: resolve(ctx.params.checkpoint) })).step ?? 0;
      const withIters = { ...experiment, training: { ...experiment.training, nIters: startStep + ctx.params.steps } };
      const out = await ctx.session.finetune(ctx.params.checkpoint, withIters, { runDir: ctx.pointDir, handle: point.loss, signal: ctx.signal });
      handle = out.handle;
      seconds = out.result.seconds;
    }
    const yardstick = {
      terms: [
        { kind: "dsm" as const, weighting: "conventional" as const, reduce: "mean" as const, importanceSampling: false, eps: 1e-5 },
        { kind: "scoreFpe" as const, mode: "both" as const, alpha: 0.15, beta: 0.01, m: 2, weighting: "ll" as const, points: "pert" as const, dt: "autodiff" as const, div: "hutchinson" as const, probe: "gaussian" as const },
      ],
    };
    const weights = ctx.params.weights === "ema" ? "ema" : "model";
    const loss = await ctx.session.evaluate(handle, { kind: "loss", weights, loss: yardstick, n: ctx.params.evalPoints, seed: 7, batchSize: 16 }, { signal: ctx.signal });
    const fpe = await ctx.session.evaluate(handle, { kind: "fpeResidual", weights, t: TIMES, n: 16, seed: 7 }, { signal: ctx.signal });
    return {
      dsm: loss.terms.dsm ?? NaN,
      fpeVector: loss.terms["score_fpe.vector"] ?? NaN,
      fpeScalar: loss.terms["score_fpe.scalar"] ?? NaN,
      ...Object.fromEntries(TIMES.map((t, i) => [`residual@${t}`, fpe.relative[i]!])),
      fineTuneSeconds: seconds,
    };
  },
  async plot(rows, { session, path }) {
    await session.request("plot.lines", {
      path,
      title: "relative score-FPE residual after fine-tuning",
      xlabel: "t",
      ylabel: "‖∂t s − RHS‖ / ‖RHS‖",
      logx: true,
      series: rows.map((r) => ({ label: String(r.loss), x: TIMES, y: TIMES.map((t) => Number((r as Record<string, unknown>)[`residual@${t}`])) })),
    });
  },
});

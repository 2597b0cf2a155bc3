/**
 * Ops of the numerics area (py/fpdiff/ops/numerics.py): per-term losses of a model on a batch,
 * the score-FPE residual and the ScoreODE Fisher divergence along t, ODE log-likelihood and
 * bits/dim, and sampling. Points come from `x` (model space) or from the model's own data (toy sets
 * sampled with `seed`; image sets read from the experiment's data path, the first `n` of `split`).
 */
import { z } from "zod";
import { FiniteDifferenceSchema, LossSchema } from "../../dsl/loss.js";
import { defineOp, tensorSchema } from "./define.js";

const weightsArg = z.enum(["ema", "model"]).default("ema");
const solver = z.enum(["dopri5", "rk4", "euler"]);
const probe = z.enum(["rademacher", "gaussian"]);
const times = z.array(z.number().gt(0).max(1)).min(1);

/** Where the points come from: `x`, or n points of the model's data (`split` for image sets). */
const pointsArgs = {
  x: tensorSchema.optional(),
  /** Absent: each op's own count (more for toys than for images). */
  n: z.number().int().positive().max(10_000_000).optional(),
  split: z.enum(["test", "train"]).default("test"),
  seed: z.number().int().nonnegative().default(0),
};

/** Progress of a numerics or toy op (py/fpdiff/ops/progress.py). */
export const ProgressSchema = z.object({
  type: z.literal("progress"),
  /** Points (or times, for the curves along t) finished / all of them. */
  done: z.number().int(),
  total: z.number().int(),
  /** Function evaluations (ODE) or steps (PC) so far. */
  nfe: z.number().int(),
  elapsedSeconds: z.number(),
});

/** A result along t: the times, a curve (one value per time) for each name, the points, the time taken. */
export function curvesAlongT<S extends z.ZodRawShape>(curves: S) {
  return z.object({ t: z.array(z.number()), ...curves, n: z.number().int(), seconds: z.number() });
}
/** One value per time of a result along t. */
export const curve = () => z.array(z.number());

export const LossEvalResultSchema = z.object({
  /** The expression's total, averaged over the points. */
  loss: z.number(),
  /** Every part unweighted: dsm, high_order.frobenius|trace|third, score_fpe.vector|scalar. */
  terms: z.record(z.string(), z.number()),
  /** Each term's weighted contribution to the total: dsm, high_order, score_fpe. */
  weighted: z.record(z.string(), z.number()),
  n: z.number().int(),
  seconds: z.number(),
});

export const FpeResidualResultSchema = curvesAlongT({
  /** Mean ‖∂t s − ∇x φ‖ per t. */
  residual: curve(),
  /** Mean ‖∂t s‖ and mean ‖∇x φ‖ per t. */
  lhs: curve(),
  rhs: curve(),
  /** residual / rhs. */
  relative: curve(),
  /** Mean ‖r‖²/D², the regulariser's per-dimension scale. */
  perDimSq: curve(),
});

export const FisherResultSchema = curvesAlongT({
  /** E[g² ‖∇log p_t^ODE − ∇log q_t‖²]: the ScoreODE's own score against the data score. */
  fisherOde: curve(),
  /** E[g² ‖s_θ − ∇log q_t‖²]: the score model's error. */
  fisherModel: curve(),
  /** E[g² ‖∇log p_t^ODE − s_θ‖²]. */
  odeVsModel: curve(),
});

export const NllResultSchema = z.object({
  /** Mean negative log-likelihood (nats) of the (dequantised) points in model space. */
  nll: z.number(),
  nllStderr: z.number(),
  /** Bits/dim with the data's offset (images only; null for toy data). */
  bpd: z.number().nullable(),
  bpdStderr: z.number().nullable(),
  offset: z.number().nullable(),
  /** Per-point NLL (nats), averaged over repeats. */
  perSample: tensorSchema,
  n: z.number().int(),
  dim: z.number().int(),
  repeats: z.number().int(),
  nfe: z.number().int(),
  /** The ODE solver that answered: the one asked for, or the fixed-step fallback after it failed. */
  solver: z.string(),
  seconds: z.number(),
  step: z.number().int(),
});

export const SampleResultSchema = z.object({
  /** Samples: [n, D] for toys, [n, C, H, W] in data space ([0, 1], not clipped) for images. */
  x: tensorSchema,
  nfe: z.number().int(),
  method: z.enum(["pc", "ode"]),
  seconds: z.number(),
});

export const numericsOps = {
  "loss.eval": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      /** Default: the model's experiment loss. */
      loss: LossSchema.optional(),
      /** Evaluate every point at this time instead of the loss's own draw of t. */
      t: z.number().min(0).max(1).optional(),
      batchSize: z.number().int().positive().default(1024),
      ...pointsArgs,
    }),
    result: LossEvalResultSchema,
    event: ProgressSchema,
    doc: "per-term losses of a model on a batch (one shared draw of t, z, x_t per batch)",
  }),
  "diagnostics.fpe_residual": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      t: times,
      /** Default: exact for toys, Hutchinson for images. */
      div: z.enum(["exact", "hutchinson"]).optional(),
      dt: z.union([z.literal("autodiff"), FiniteDifferenceSchema]).default("autodiff"),
      /** Perturbed points x_t (default) or the clean points at every t. */
      points: z.enum(["pert", "x"]).default("pert"),
      probe: probe.default("rademacher"),
      nProbes: z.number().int().positive().max(4096).default(1),
      ...pointsArgs,
    }),
    result: FpeResidualResultSchema,
    event: ProgressSchema,
    doc: "the score-FPE residual of a model as a function of t (FP-Diffusion's central plot)",
  }),
  "diagnostics.fisher": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      t: times,
      rtol: z.number().positive().default(1e-5),
      atol: z.number().positive().default(1e-5),
      method: solver.default("dopri5"),
      ...pointsArgs,
    }),
    result: FisherResultSchema,
    event: ProgressSchema,
    doc: "toy mixtures: weighted Fisher divergence of the ScoreODE's own score to the data score along t",
  }),
  "likelihood.nll": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      /** Absent ODE settings come from the experiment's eval.bpd. `steps` is for rk4 / euler. */
      method: solver.optional(),
      rtol: z.number().positive().optional(),
      atol: z.number().positive().optional(),
      eps: z.number().min(0).max(1).optional(),
      steps: z.number().int().positive().default(100),
      divergence: z.enum(["exact", "hutchinson"]).optional(),
      probe: probe.optional(),
      /** Uniform dequantisation (images only). */
      dequantize: z.boolean().optional(),
      repeats: z.number().int().positive().max(100).optional(),
      batchSize: z.number().int().positive().optional(),
      ...pointsArgs,
    }),
    result: NllResultSchema,
    event: ProgressSchema,
    doc: "NLL (nats) and bits/dim by the probability-flow ODE, batched on the model's device",
  }),
  sample: defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      n: z.number().int().positive().max(1_000_000),
      seed: z.number().int().nonnegative().default(0),
      batchSize: z.number().int().positive().optional(),
      /** Default: the experiment's sampling.method. */
      method: z.enum(["pc", "ode"]).optional(),
      eps: z.number().min(0).max(1).optional(),
      noiseRemoval: z.boolean().optional(),
      predictor: z.enum(["reverse_diffusion", "euler_maruyama", "none"]).optional(),
      corrector: z.enum(["langevin", "none"]).optional(),
      snr: z.number().nonnegative().optional(),
      nStepsEach: z.number().int().positive().optional(),
      N: z.number().int().positive().optional(),
      solver: solver.optional(),
      rtol: z.number().positive().optional(),
      atol: z.number().positive().optional(),
      /** Fixed steps of rk4 / euler (default 100). */
      steps: z.number().int().positive().optional(),
    }),
    result: SampleResultSchema,
    event: ProgressSchema,
    doc: "n samples of a model by the PC sampler or the probability-flow ODE",
  }),
} as const;

/** Training loop, evaluation and sampling settings (Score SDE's training / eval / sampling sections). */
import { z } from "zod";
import { builders } from "./builder.js";
import { parseOrThrow } from "./errors.js";

const posInt = () => z.number().int().positive();
const tol = () => z.number().positive();

export const TrainingSchema = z.strictObject({
  batchSize: posInt().default(128),
  nIters: posInt().default(1300001),
  snapshotFreq: posInt().default(50000),
  snapshotFreqForPreemption: posInt().default(10000),
  logFreq: posInt().default(50),
  evalFreq: posInt().default(100),
  /** Produce samples at each snapshot. */
  snapshotSampling: z.boolean().default(true),
  seed: z.number().int().min(0).default(42),
  /** Deterministic algorithms and seeded data order (bitwise-reproducible resumes). */
  deterministic: z.boolean().default(false),
  /**
   * On a CUDA device, capture the loss, backward pass and gradient clipping of the step in a CUDA
   * graph and replay it (launch-bound toy steps; py/fpdiff/fast_step.py). The same updates as the
   * plain step; losses that draw beyond (t, z) and networks with dropout fall back to it, with a warning.
   */
  cudaGraph: z.boolean().default(false),
  /** Continuous-time training; the discrete SMLD / DDPM losses are not supported. */
  continuous: z.literal(true, { error: "only continuous-time training is supported" }).default(true),
  /** Write TensorBoard event files (scalars, sample grids) under <run>/tensorboard. */
  tensorboard: z.boolean().default(true),
  /** Bits/dim (nats for toys) of the EMA model on the first n test points at every snapshot; 0: off. */
  snapshotBpd: z.number().int().min(0).default(0),
  /** Samples drawn at each snapshot when snapshotSampling; absent: batchSize (as Score SDE). */
  snapshotSamples: posInt().optional(),
});

const bpdShape = {
  /** Which split the bits/dim are computed on. */
  dataset: z.enum(["test", "train"]).default("test"),
  /** Passes over the data set (the high-order paper averages 5). */
  repeats: posInt().default(1),
  solver: z.enum(["dopri5", "rk4", "euler"]).default("dopri5"),
  rtol: tol().default(1e-5),
  atol: tol().default(1e-5),
  /** Lower end of the ODE integration [eps, 1]. */
  eps: z.number().positive().lt(1).default(1e-5),
  /** Hutchinson probe (Score SDE: Rademacher). */
  probe: z.enum(["rademacher", "gaussian"]).default("rademacher"),
};
const divergence = () => z.enum(["hutchinson", "exact"]);

export const BpdSchema = z.strictObject({
  ...bpdShape,
  /** Absent: "hutchinson" for images, "exact" for toy data. */
  divergence: divergence().optional(),
  /** Uniform dequantisation of 8-bit data (the original always dequantises for bpd); absent:
   *  true for images, false for toy data. */
  dequantize: z.boolean().optional(),
});
/** The `bpd` section once the experiment resolved it: both data-dependent fields present. */
export const ResolvedBpdSchema = z.strictObject({
  ...bpdShape,
  divergence: divergence(),
  dequantize: z.boolean(),
});

const evalShape = {
  batchSize: posInt().default(1024),
  beginCkpt: z.number().int().min(0).default(9),
  endCkpt: z.number().int().min(0).default(26),
  enableSampling: z.boolean().default(false),
  numSamples: posInt().default(50000),
  enableLoss: z.boolean().default(true),
  enableBpd: z.boolean().default(false),
};
const ckptOrder = {
  message: "beginCkpt must not exceed endCkpt",
  path: ["endCkpt"],
};
export const EvalSchema = z
  .strictObject({ ...evalShape, bpd: BpdSchema.prefault({}) })
  .refine((e) => e.beginCkpt <= e.endCkpt, ckptOrder);
export const ResolvedEvalSchema = z
  .strictObject({ ...evalShape, bpd: ResolvedBpdSchema })
  .refine((e) => e.beginCkpt <= e.endCkpt, ckptOrder);

const pcShape = {
  method: z.literal("pc"),
  predictor: z.enum(["reverse_diffusion", "euler_maruyama", "none"]).default("reverse_diffusion"),
  corrector: z.enum(["langevin", "none"]).default("langevin"),
  snr: z.number().positive().default(0.16),
  nStepsEach: posInt().default(1),
  /** Final denoising step. */
  noiseRemoval: z.boolean().default(true),
  /** Use the probability-flow ODE's reverse drift in the predictor. */
  probabilityFlow: z.boolean().default(false),
};
const pcDoesSomething = {
  message: "a PC sampler needs a predictor or a corrector (both are \"none\")",
  path: ["corrector"],
};
const steps = () => posInt();
const samplingEps = () => z.number().positive().lt(1);

export const PcSamplingSchema = z
  .strictObject({
    ...pcShape,
    /** Number of reverse steps; absent: the SDE's N. */
    N: steps().optional(),
    /** Smallest time; absent: 1e-5 for VE, 1e-3 for VP / subVP (as Score SDE). */
    eps: samplingEps().optional(),
  })
  .refine((s) => s.predictor !== "none" || s.corrector !== "none", pcDoesSomething);
export const ResolvedPcSamplingSchema = z
  .strictObject({ ...pcShape, N: steps(), eps: samplingEps() })
  .refine((s) => s.predictor !== "none" || s.corrector !== "none", pcDoesSomething);

const odeShape = {
  method: z.literal("ode"),
  solver: z.enum(["dopri5", "rk4", "euler"]).default("dopri5"),
  rtol: tol().default(1e-5),
  atol: tol().default(1e-5),
  noiseRemoval: z.boolean().default(true),
};
export const OdeSamplingSchema = z.strictObject({
  ...odeShape,
  /** Smallest time; absent: 1e-5 for VE, 1e-3 for VP / subVP. */
  eps: samplingEps().optional(),
});
export const ResolvedOdeSamplingSchema = z.strictObject({ ...odeShape, eps: samplingEps() });

export const SamplingSchema = z.discriminatedUnion("method", [PcSamplingSchema, OdeSamplingSchema]);
/** A sampler once the experiment resolved it: N and eps present. */
export const ResolvedSamplingSchema = z.discriminatedUnion("method", [
  ResolvedPcSamplingSchema,
  ResolvedOdeSamplingSchema,
]);

export type Training = z.infer<typeof TrainingSchema>;
export type Bpd = z.infer<typeof BpdSchema>;
export type Eval = z.infer<typeof EvalSchema>;
export type PcSampling = z.infer<typeof PcSamplingSchema>;
export type OdeSampling = z.infer<typeof OdeSamplingSchema>;
export type Sampling = z.infer<typeof SamplingSchema>;

/** `training({batchSize: 48, nIters: 100000})`. */
export function training(opts: z.input<typeof TrainingSchema> = {}): Training {
  return parseOrThrow(TrainingSchema, opts, "training", "training()");
}

/** `evaluation({batchSize: 2000, enableBpd: true, bpd: {repeats: 5}})` — the `eval` section. */
export function evaluation(opts: z.input<typeof EvalSchema> = {}): Eval {
  return parseOrThrow(EvalSchema, opts, "eval", "evaluation()");
}

/** `sampling.pc({predictor: "euler_maruyama", corrector: "none"})`, `sampling.ode()`. */
export const sampling = builders("sampling", { pc: PcSamplingSchema, ode: OdeSamplingSchema }, "method");

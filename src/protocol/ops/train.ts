/** Ops of the train area (py/fpdiff/ops/train.py): the training loop in the worker. */
import { z } from "zod";
import { ExperimentSchema } from "../../dsl/experiment.js";
import { defineOp } from "./define.js";

/** The experiment: resolved and checked here, then validated again by the worker. */
const experimentArg = ExperimentSchema;

/** Per-term loss values, unweighted ("dsm", "high_order.frobenius", "score_fpe.vector", …). */
export const LossTermsSchema = z.record(z.string(), z.number());

/** Training metrics of loop step `step` (the loss before update `step`; every training.logFreq). */
export const TrainMetricsSchema = z.object({
  step: z.number().int(),
  loss: z.number(),
  terms: LossTermsSchema,
  gradNorm: z.number(),
  lr: z.number(),
});
export type TrainMetrics = z.infer<typeof TrainMetricsSchema>;

/** A checkpoint the worker wrote (atomically), in the original layout; `step` = updates made. */
export const TrainCheckpointSchema = z.object({
  kind: z.enum(["snapshot", "meta"]),
  path: z.string(),
  step: z.number().int(),
  sha256: z.string(),
  bytes: z.number().int(),
});
export type TrainCheckpoint = z.infer<typeof TrainCheckpointSchema>;

export const TrainEventSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("progress"),
    /** Updates made so far (the state's step). */
    step: z.number().int(),
    /** The step this call ends at: min(training.nIters, start + maxSteps). */
    total: z.number().int(),
    itPerSec: z.number(),
    etaSeconds: z.number().nullable(),
    elapsedSeconds: z.number(),
  }),
  TrainMetricsSchema.extend({ type: z.literal("metrics") }),
  TrainCheckpointSchema.extend({ type: z.literal("checkpoint") }),
  z.object({ type: z.literal("warning"), message: z.string() }),
  /** A score-FPE term's weights set from its `calibrate` shares (measured, or recorded by the run). */
  z.object({
    type: z.literal("calibration"),
    /** Index of the term in loss.terms. */
    term: z.number().int(),
    alpha: z.number(),
    beta: z.number(),
    /** The update the measurement was made at (the run's start). */
    step: z.number().int(),
    vectorShare: z.number().nullable(),
    scalarShare: z.number().nullable(),
    batches: z.number().int(),
    /** Mean unweighted values on the calibration batches: the rest of the loss, vector, scalar. */
    measured: z.object({ rest: z.number(), vector: z.number(), scalar: z.number() }),
    source: z.enum(["measured", "recorded"]),
  }),
  /** Every loss term of the EMA model on held-out batch `step` (every training.evalFreq). */
  z.object({ type: z.literal("eval"), step: z.number().int(), loss: z.number(), terms: LossTermsSchema }),
  /** Samples of the EMA model at a snapshot: samples/iter_<step>/sample.npz and sample.png. */
  z.object({
    type: z.literal("samples"),
    step: z.number().int(),
    path: z.string(),
    png: z.string().nullable(),
    n: z.number().int(),
    nfe: z.number().int(),
    method: z.string(),
    seconds: z.number(),
  }),
  /** Bits/dim (images) or NLL in nats (toys) on the first training.snapshotBpd test points. */
  z.object({
    type: z.literal("bpd"),
    step: z.number().int(),
    metric: z.enum(["bpd", "nll"]),
    value: z.number(),
    /** Standard error over the points; null for a single point. */
    stderr: z.number().nullable(),
    n: z.number().int(),
    nfe: z.number(),
    seconds: z.number(),
  }),
]);
export type TrainEvent = z.infer<typeof TrainEventSchema>;

export const TrainRunArgsSchema = z.strictObject({
  experiment: experimentArg,
  /** The run directory; checkpoints/ and checkpoints-meta/ are written under it. */
  workdir: z.string().min(1),
  /** The handle the trained model is registered under (default: experiment.name). */
  handle: z.string().optional(),
  /** Continue from <workdir>/checkpoints-meta/checkpoint.pth when it exists. */
  resume: z.boolean().default(false),
  /** Fine-tune: start from an original checkpoint's model, EMA, Adam state and step. */
  init: z.strictObject({ checkpoint: z.string().min(1) }).optional(),
  device: z.string().describe("auto | cpu | cuda | cuda:N").default("auto"),
  /** Stop (status "stopped", meta checkpoint written) after this many updates. */
  maxSteps: z.number().int().nonnegative().optional(),
  /** Wall-clock interval between progress events. */
  eventIntervalSeconds: z.number().nonnegative().default(1),
  /** Held-out losses, snapshot samples / bits/dim and TensorBoard, on the experiment's schedule. */
  evaluate: z.boolean().default(true),
});

export const TrainRunResultSchema = z.object({
  handle: z.string(),
  status: z.enum(["completed", "stopped"]),
  /** Updates made in total. */
  step: z.number().int(),
  /** Updates made by this call. */
  steps: z.number().int(),
  seconds: z.number(),
  /** Metrics of the last step this call made (null if it made none). */
  lastMetrics: TrainMetricsSchema.nullable(),
  checkpoints: z.array(TrainCheckpointSchema),
});
export type TrainRunResult = z.infer<typeof TrainRunResultSchema>;

export const trainOps = {
  "train.run": defineOp({
    args: TrainRunArgsSchema,
    result: TrainRunResultSchema,
    event: TrainEventSchema,
    doc:
      "train, fine-tune (init) or resume an experiment; CANCELLED after writing the meta checkpoint, " +
      "DIVERGED on a NaN/Inf loss (the last good checkpoint is kept); registers the model under `handle`",
  }),
} as const;

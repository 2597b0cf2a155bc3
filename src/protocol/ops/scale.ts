/**
 * Ops of evaluation at scale (py/fpdiff/ops/scale.py): bits/dim over a whole data set, samples in
 * .npz shards, FID / IS / KID, and reference statistics. Each writes its units to `out` as they
 * finish and continues from there when asked again with the same settings; in a job every rank
 * computes its share.
 */
import { z } from "zod";
import { defineOp } from "./define.js";

const weightsArg = z.enum(["ema", "model"]);
const solver = z.enum(["dopri5", "rk4", "euler"]);

/** After each round of units: images / samples done, and for bits/dim the running mean ± s.e. and NFE. */
export const ScaleProgressSchema = z.object({
  type: z.literal("progress"),
  done: z.number().int(),
  total: z.number().int(),
  unit: z.enum(["images", "samples"]),
  elapsedSeconds: z.number(),
  bpd: z.number().nullable().optional(),
  stderr: z.number().nullable().optional(),
  nfe: z.number().nullable().optional(),
});

const samplerArgs = {
  /** Default: the experiment's sampler. */
  method: z.enum(["pc", "ode"]).optional(),
  /** PC: reverse steps (default: the experiment's / the SDE's N). */
  N: z.number().int().positive().optional(),
};

const nfeSummary = z.object({
  units: z.number().int(),
  mean: z.number().nullable(),
  min: z.number().nullable(),
  max: z.number().nullable(),
});

const inceptionInfo = z.object({ path: z.string(), sha256: z.string(), verified: z.boolean() });

export const BpdDatasetResultSchema = z.object({
  out: z.string(),
  world: z.number().int(),
  seconds: z.number(),
  complete: z.boolean(),
  images: z.number().int(),
  repeats: z.array(z.object({ repeat: z.number().int(), images: z.number().int(), bpd: z.number().nullable(), stderr: z.number().nullable() })),
  /** Mean over images of each image's mean over repeats; s.e. over images. */
  bpd: z.number().nullable(),
  stderr: z.number().nullable(),
  nfe: z.object({
    units: z.number().int(),
    mean: z.number().nullable(),
    min: z.number().nullable(),
    median: z.number().nullable(),
    max: z.number().nullable(),
    histogram: z.record(z.string(), z.number().int()),
  }),
  solvers: z.record(z.string(), z.number().int()),
  computeSeconds: z.number(),
  settings: z.record(z.string(), z.unknown()),
  offsetConvention: z.string(),
});
export type BpdDatasetResult = z.infer<typeof BpdDatasetResultSchema>;

export const FidResultSchema = z.object({
  out: z.string(),
  stats: z.string(),
  inception: inceptionInfo,
  resize: z.enum(["tf1", "pytorch"]),
  sampler: z.record(z.string(), z.unknown()),
  nfe: nfeSummary,
  world: z.number().int(),
  seconds: z.number(),
  fid: z.number(),
  inceptionScore: z.number(),
  inceptionScore10: z.object({ mean: z.number(), std: z.number() }),
  kid: z.object({ mean: z.number(), std: z.number() }).nullable(),
  n: z.number().int(),
  referenceN: z.number().int(),
  warning: z.string().optional(),
});
export type FidResult = z.infer<typeof FidResultSchema>;

export const scaleOps = {
  "eval.bpd_dataset": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg.default("ema"),
      /** The split (default: the experiment's eval.bpd.dataset). */
      dataset: z.enum(["test", "train"]).optional(),
      /** Only the first n images (default: all). */
      n: z.number().int().positive().optional(),
      repeats: z.number().int().positive().max(100).optional(),
      batchSize: z.number().int().positive().optional(),
      solver: solver.optional(),
      rtol: z.number().positive().optional(),
      atol: z.number().positive().optional(),
      eps: z.number().min(0).max(1).optional(),
      probe: z.enum(["rademacher", "gaussian"]).optional(),
      /** Fixed steps over [eps, 1] for rk4 / euler. */
      steps: z.number().int().positive().default(100),
      /** Uniform dequantisation (default: the experiment's eval.bpd.dequantize, else true). */
      dequantize: z.boolean().optional(),
      seed: z.number().int().nonnegative().default(0),
      /** Output directory: manifest.json, units.jsonl, result.json. */
      out: z.string().min(1),
      eventIntervalSeconds: z.number().nonnegative().default(1),
    }),
    result: BpdDatasetResultSchema,
    event: ScaleProgressSchema,
    doc: "bits/dim of a loaded image model over a whole split (uniform dequantisation, Hutchinson), resumable, sharded over ranks",
  }),
  "sample.shards": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg.default("ema"),
      n: z.number().int().positive().max(10_000_000),
      /** Samples per shard (at most n). */
      batchSize: z.number().int().positive().default(500),
      seed: z.number().int().nonnegative().default(0),
      out: z.string().min(1),
      /** Samples in grid.png (images; 0: none). */
      grid: z.number().int().nonnegative().default(64),
      eventIntervalSeconds: z.number().nonnegative().default(1),
      ...samplerArgs,
    }),
    result: z.object({
      out: z.string(),
      n: z.number().int(),
      shards: z.array(z.string()),
      nfe: nfeSummary,
      sampler: z.record(z.string(), z.unknown()),
      world: z.number().int(),
      grid: z.string().nullable(),
      seconds: z.number(),
    }),
    event: ScaleProgressSchema,
    doc: "n samples in .npz shards (uint8 NHWC images) and a PNG grid; reproducible per seed, resumable, sharded over ranks",
  }),
  "eval.fid": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg.default("ema"),
      n: z.number().int().min(2).max(10_000_000).default(50000),
      /** Samples per unit (at most n). */
      batchSize: z.number().int().positive().default(500),
      seed: z.number().int().nonnegative().default(0),
      out: z.string().min(1),
      /** Reference statistics: Score SDE's cifar10_stats.npz (pool_3) or pytorch-fid's (mu, sigma). */
      stats: z.string().min(1),
      /** pt_inception-2015-12-05-6726825d.pth (default: FPD_INCEPTION, then torch.hub's cache). */
      inception: z.string().optional(),
      resize: z.enum(["tf1", "pytorch"]).default("tf1"),
      keepSamples: z.boolean().default(false),
      eventIntervalSeconds: z.number().nonnegative().default(1),
      ...samplerArgs,
    }),
    result: FidResultSchema,
    event: ScaleProgressSchema,
    doc: "FID, Inception score and KID of n samples against reference statistics; resumable, sharded over ranks",
  }),
  "eval.fid_stats": defineOp({
    args: z.strictObject({
      /** Which data set, where (absent: the worker's FPD_DATA_DIR). */
      data: z.strictObject({ kind: z.enum(["cifar10", "imagenet32"]), path: z.string().min(1).optional() }),
      split: z.enum(["train", "test"]).default("train"),
      n: z.number().int().positive().optional(),
      batchSize: z.number().int().positive().default(500),
      out: z.string().min(1),
      /** Keep the activations (pool_3, needed for KID). */
      keepPool: z.boolean().default(true),
      device: z.string().describe("auto | cpu | cuda | cuda:N").default("auto"),
      inception: z.string().optional(),
      resize: z.enum(["tf1", "pytorch"]).default("tf1"),
      eventIntervalSeconds: z.number().nonnegative().default(1),
    }),
    result: z.object({
      path: z.string(),
      n: z.number().int().optional(),
      pool: z.boolean().optional(),
      split: z.string(),
      inception: inceptionInfo,
      resize: z.string(),
      world: z.number().int(),
      seconds: z.number(),
    }),
    event: ScaleProgressSchema,
    doc: "reference statistics (pool3 activations, mean, covariance) of a data set split for FID / KID",
  }),
} as const;

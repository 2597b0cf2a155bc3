/** Ops of the models area (py/fpdiff/ops/models.py): networks and the original checkpoints. */
import { z } from "zod";
import { ExperimentSchema } from "../../dsl/experiment.js";
import { defineOp, tensorSchema } from "./define.js";

/** The experiment: resolved and checked here, then validated again by the worker. */
const experimentArg = ExperimentSchema;
const deviceArg = z.string().describe("auto | cpu | cuda | cuda:N");
const weightsArg = z.enum(["ema", "model"]);

/** A file the worker wrote (atomically); TS keeps it in the run's checkpoint registry. */
export const SavedFileSchema = z.object({
  path: z.string(),
  step: z.number().int().nullable(),
  sha256: z.string(),
  bytes: z.number().int(),
});
export type SavedFile = z.infer<typeof SavedFileSchema>;

/**
 * What a checkpoint file is: `score_sde` (the PyTorch Score SDE training format), `state_dict` (a
 * plain export), `flax` (a score_flow / score_sde JAX / mle_score_ode training state); the
 * container it came in (`msgpack` for flax).
 */
export const CheckpointFormatSchema = z.enum(["score_sde", "state_dict", "flax"]);
export const CheckpointContainerSchema = z.enum(["zip", "legacy", "safetensors", "msgpack"]);

export const CheckpointInfoSchema = z.object({
  path: z.string().nullable(),
  sha256: z.string().nullable(),
  bytes: z.number().int().nullable(),
  step: z.number().int().nullable(),
  format: CheckpointFormatSchema,
  container: CheckpointContainerSchema.nullable(),
  hasEma: z.boolean(),
  hasOptimizer: z.boolean(),
  /** What could not carry over exactly when the file was mapped onto the network (flax files). */
  warnings: z.array(z.string()).optional(),
});

export const LoadedModelSchema = z.object({
  handle: z.string(),
  name: z.string(),
  step: z.number().int(),
  parameters: z.number().int(),
  device: z.string(),
  hasEma: z.boolean(),
  source: z.string().nullable(),
  checkpoint: CheckpointInfoSchema.nullable(),
});

/** A preset whose state-dict layout a file has; `overrides` e.g. {nf: 8} for a narrower copy. */
export const PresetMatchSchema = z.object({ preset: z.string(), overrides: z.record(z.string(), z.unknown()) });

export const InspectResultSchema = z.object({
  path: z.string().describe("the file read (a work directory's newest checkpoints/checkpoint_<N>)"),
  bytes: z.number().int().nullable(),
  sha256: z.string().nullable(),
  container: CheckpointContainerSchema.nullable(),
  format: CheckpointFormatSchema,
  step: z.number().int().nullable(),
  tensors: z.number().int(),
  parameterCount: z.number().int(),
  dtypes: z.record(z.string(), z.number().int()),
  buffers: z.array(z.string()),
  ema: z
    .object({
      decay: z.number(),
      numUpdates: z.number().int().nullable(),
      shadowParams: z.number().int(),
      shadowElements: z.number().int(),
    })
    .nullable(),
  optimizer: z
    .object({
      kind: z.string(),
      paramGroups: z.number().int(),
      parameters: z.number().int(),
      stateEntries: z.number().int(),
      lr: z.number().nullable(),
      lrType: z.string().nullable(),
      betas: z.array(z.number()).nullable(),
      eps: z.number().nullable(),
      weightDecay: z.number().nullable(),
      amsgrad: z.boolean().nullable(),
      adamStepType: z.string().nullable(),
    })
    .nullable(),
  /** flax: the Adam step count (one for every parameter); null for PyTorch files. */
  adamStep: z.number().int().nullable(),
  extraKeys: z.array(z.string()),
  matchingPresets: z.array(PresetMatchSchema),
  globals: z.array(z.string()),
});
export type InspectResult = z.infer<typeof InspectResultSchema>;

/** `details` of a BAD_REQUEST about a checkpoint (message starts with the same code). */
export const CheckpointErrorDetailsSchema = z.object({
  code: z.enum(["not_a_checkpoint", "corrupt_checkpoint", "unsafe_checkpoint", "architecture_mismatch", "no_space", "checkpoint_error"]),
  message: z.string(),
  path: z.string().nullable(),
  /** The checkpoint field at fault (e.g. `step`, `ema.decay`, `model_state`). */
  field: z.string().optional(),
  missing: z.array(z.string()).optional(),
  unexpected: z.array(z.string()).optional(),
  shapeMismatches: z.array(z.tuple([z.string(), z.array(z.number()), z.array(z.number())])).optional(),
  matchingPresets: z.array(PresetMatchSchema).optional(),
  counts: z.object({ missing: z.number().int(), unexpected: z.number().int(), shapeMismatches: z.number().int() }).optional(),
  globals: z.array(z.string()).optional(),
});

export const modelsOps = {
  "model.load": defineOp({
    args: z.strictObject({
      experiment: experimentArg,
      checkpoint: z
        .string()
        .optional()
        .describe("a Score SDE checkpoint, a state-dict export or a flax state (or a work directory); strict key/shape match"),
      handle: z.string().min(1).optional().describe("default: the experiment's name (made unique)"),
      device: deviceArg.default("auto"),
      seed: z.number().int().nonnegative().optional().describe("initialisation seed without a checkpoint (default training.seed)"),
    }),
    result: LoadedModelSchema,
    doc: "build the experiment's network, fresh or restored from a checkpoint, and keep it by handle",
  }),
  "model.score": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg.default("ema"),
      x: tensorSchema,
      t: z.union([tensorSchema, z.number()]),
      batchSize: z.number().int().positive().default(64),
    }),
    result: z.object({
      output: tensorSchema.describe("raw network output for the label the SDE feeds it"),
      score: tensorSchema,
      labels: tensorSchema,
      weights: weightsArg,
      step: z.number().int(),
    }),
    doc: "network output and score of a loaded model at (x, t), in batches",
  }),
  "ckpt.score": defineOp({
    args: z.strictObject({
      experiment: experimentArg,
      checkpoint: z.string(),
      input: z.string().describe(".pt or .npz holding x [B,...] and t [B] (or a number)"),
      out: z.string().describe(".npz to write: output, score, labels, t"),
      weights: weightsArg.default("ema"),
      device: deviceArg.default("auto"),
      batchSize: z.number().int().positive().default(64),
      layout: z.enum(["nchw", "nhwc"]).default("nchw").describe("layout of x and of the written output/score (nhwc: JAX's)"),
    }),
    result: z.object({
      out: z.string(),
      n: z.number().int(),
      shape: z.array(z.number().int()),
      weights: weightsArg,
      step: z.number().int(),
      checkpoint: CheckpointInfoSchema.nullable(),
    }),
    doc: "file to file: restore a checkpoint into the experiment's network and write output and score for x, t",
  }),
  "ckpt.inspect": defineOp({
    args: z.strictObject({ path: z.string() }),
    result: InspectResultSchema,
    doc: "format, step, parameter count, EMA, optimiser and matching presets of a checkpoint (safe loading)",
  }),
  "ckpt.save": defineOp({
    args: z.strictObject({
      model: z.string(),
      path: z.string().optional(),
      workdir: z.string().optional(),
      snapshot: z.number().int().nonnegative().optional().describe("checkpoints/checkpoint_<k>.pth"),
      meta: z.boolean().default(false).describe("checkpoints-meta/checkpoint.pth"),
    }),
    result: SavedFileSchema.extend({ kind: z.enum(["file", "snapshot", "meta"]) }),
    doc: "write a loaded model in the original format, atomically (path, snapshot k or the meta file)",
  }),
  "ckpt.convert": defineOp({
    args: z.strictObject({
      path: z.string(),
      out: z.string(),
      to: z.enum(["safetensors", "state_dict", "score_sde"]),
      weights: weightsArg.default("ema"),
      experiment: experimentArg.optional().describe("needed only when the file matches no preset"),
    }),
    result: SavedFileSchema.extend({ format: z.enum(["safetensors", "state_dict", "score_sde"]) }),
    doc: "convert any accepted checkpoint (PyTorch, flax) to the PyTorch Score SDE format or a plain state dict",
  }),
} as const;

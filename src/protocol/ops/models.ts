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

export const CheckpointInfoSchema = z.object({
  path: z.string().nullable(),
  sha256: z.string().nullable(),
  bytes: z.number().int().nullable(),
  step: z.number().int().nullable(),
  format: z.enum(["score_sde", "state_dict"]),
  container: z.enum(["zip", "legacy", "safetensors"]).nullable(),
  hasEma: z.boolean(),
  hasOptimizer: z.boolean(),
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
  path: z.string(),
  bytes: z.number().int().nullable(),
  sha256: z.string().nullable(),
  container: z.enum(["zip", "legacy", "safetensors"]).nullable(),
  format: z.enum(["score_sde", "state_dict"]),
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
  extraKeys: z.array(z.string()),
  matchingPresets: z.array(PresetMatchSchema),
  globals: z.array(z.string()),
});
export type InspectResult = z.infer<typeof InspectResultSchema>;

/** `details` of a BAD_REQUEST about a checkpoint (message starts with the same code). */
export const CheckpointErrorDetailsSchema = z.object({
  code: z.enum(["not_a_checkpoint", "corrupt_checkpoint", "unsafe_checkpoint", "architecture_mismatch", "checkpoint_error"]),
  message: z.string(),
  path: z.string().nullable(),
  missing: z.array(z.string()).optional(),
  unexpected: z.array(z.string()).optional(),
  shapeMismatches: z.array(z.tuple([z.string(), z.array(z.number()), z.array(z.number())])).optional(),
  matchingPresets: z.array(PresetMatchSchema).optional(),
  globals: z.array(z.string()).optional(),
});

export const modelsOps = {
  "model.load": defineOp({
    args: z.strictObject({
      experiment: experimentArg,
      checkpoint: z.string().optional().describe("a Score SDE checkpoint or a state-dict export; strict key/shape match"),
      handle: z.string().min(1).optional().describe("default: the experiment's name (made unique)"),
      device: deviceArg.optional(),
      seed: z.number().int().nonnegative().optional().describe("initialisation seed without a checkpoint (default training.seed)"),
    }),
    result: LoadedModelSchema,
    doc: "build the experiment's network, fresh or restored from a checkpoint, and keep it by handle",
  }),
  "model.score": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg.optional(),
      x: tensorSchema,
      t: z.union([tensorSchema, z.number()]),
      batchSize: z.number().int().positive().optional(),
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
      weights: weightsArg.optional(),
      device: deviceArg.optional(),
      batchSize: z.number().int().positive().optional(),
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
      meta: z.boolean().optional().describe("checkpoints-meta/checkpoint.pth"),
    }),
    result: SavedFileSchema.extend({ kind: z.enum(["file", "snapshot", "meta"]) }),
    doc: "write a loaded model in the original format, atomically (path, snapshot k or the meta file)",
  }),
  "ckpt.convert": defineOp({
    args: z.strictObject({
      path: z.string(),
      out: z.string(),
      to: z.enum(["safetensors", "state_dict", "score_sde"]),
      weights: weightsArg.optional(),
      experiment: experimentArg.optional().describe("needed only when the file matches no preset"),
    }),
    result: SavedFileSchema.extend({ format: z.enum(["safetensors", "state_dict", "score_sde"]) }),
    doc: "convert between the original format and a plain state dict (safetensors or torch.save)",
  }),
} as const;

/** Optimiser: Adam as Score SDE configures it (β₂ = 0.999 fixed, linear warm-up, gradient clipping). */
import { z } from "zod";
import { builders } from "./builder.js";

export const AdamSchema = z.strictObject({
  kind: z.literal("adam"),
  lr: z.number().positive().default(2e-4),
  beta1: z.number().min(0).lt(1).default(0.9),
  eps: z.number().positive().default(1e-8),
  weightDecay: z.number().min(0).default(0),
  /** Linear warm-up of the learning rate over this many steps (0: none). */
  warmup: z.number().int().min(0).default(5000),
  /** Gradient-norm clipping threshold; a negative value disables clipping (as in the original). */
  gradClip: z.number().default(1),
  /**
   * When set: from this update on, the learning rate follows a cosine from `lr` down to 0 at
   * `training.nIters` (lr·½(1 + cos(π·(k − from)/(nIters − from)))), after any warm-up. A
   * continuation sets it to its start step, so the decay spans its own updates. Absent: constant
   * after warm-up, as Score SDE. (Not in the original's config layout.)
   */
  cosineDecayFrom: z.number().int().min(0).optional(),
});

export const OptimSchema = z.discriminatedUnion("kind", [AdamSchema]);

export type Adam = z.infer<typeof AdamSchema>;
export type Optim = z.infer<typeof OptimSchema>;

/** Builders: `optim.adam({lr: 1e-3, warmup: 0})`. */
export const optim = builders("optim", { adam: AdamSchema });

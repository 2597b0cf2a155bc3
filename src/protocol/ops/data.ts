/** Ops of the data area (py/fpdiff/ops/data.py). */
import { z } from "zod";
import { defineOp } from "./define.js";

export const dataOps = {
  "data.synthetic": defineOp({
    args: z.strictObject({
      path: z.string().min(1),
      kind: z.literal("cifar10").default("cifar10"),
      imagesPerFile: z.number().int().min(1).max(10000).default(64),
      seed: z.number().int().nonnegative().default(0),
    }),
    result: z.object({ path: z.string(), files: z.array(z.string()), imagesPerFile: z.number().int() }),
    doc: "write a small synthetic data set in CIFAR-10's python format (tests, fixtures, smoke runs)",
  }),
} as const;

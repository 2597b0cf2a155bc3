/** Ops of run directories (py/fpdiff/ops/runs.py): the lock one training process holds on its directory. */
import { z } from "zod";
import { defineOp } from "./define.js";

/** Who holds a run directory's lock, as the holder wrote it (`worker`, `host`, `since` added by the worker). */
export const RunLockHolder = z.record(z.string(), z.unknown());

export const runsOps = {
  "run.lock": defineOp({
    args: z.strictObject({
      dir: z.string(),
      /** Written into the lock file for a refused process to name (e.g. {pid, command}). */
      owner: z.record(z.string(), z.unknown()).optional(),
    }),
    result: z.object({ locked: z.boolean(), dir: z.string(), holder: RunLockHolder.nullable() }),
    compute: false,
    doc: "lock a run directory (exclusive flock held by the worker until run.unlock or its death); never waits",
  }),
  "run.unlock": defineOp({
    args: z.strictObject({ dir: z.string() }),
    result: z.object({ unlocked: z.boolean(), dir: z.string() }),
    compute: false,
    doc: "release a run directory's lock",
  }),
} as const;

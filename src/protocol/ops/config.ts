/** Ops of the DSL area (py/fpdiff/ops/config.py): the experiment checked again in Python. */
import { z } from "zod";
import { ExperimentSchema } from "../../dsl/experiment.js";
import { SdeSchema } from "../../dsl/sde.js";
import { defineOp } from "./define.js";

export const ConfigIssueSchema = z.object({ path: z.string(), message: z.string() });

const times = z.array(z.number().min(0).max(1)).describe("times in [0, 1]");
const series = z.array(z.number());

export const configOps = {
  "config.validate": defineOp({
    args: z.strictObject({ experiment: ExperimentSchema }),
    result: z.object({ experiment: ExperimentSchema }),
    compute: false,
    doc: "validate an experiment against the generated schema in Python; answers it as the worker decoded it",
  }),
  "config.schedule": defineOp({
    args: z.strictObject({ sde: SdeSchema, t: times }),
    result: z.object({
      meanCoef: series,
      std: series,
      g2: series,
      label: series,
      sigma: series.optional(),
      beta: series.optional(),
    }),
    compute: false,
    doc: "an SDE's schedules (σ or β, mean coefficient, std, g², label) at the given times, by fpdiff.sde in float64",
  }),
} as const;

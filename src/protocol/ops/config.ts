/** Ops of the DSL area (py/fpdiff/ops/config.py): the experiment checked again in Python. */
import { z } from "zod";
import { ExperimentSchema, type ExperimentInput } from "../../dsl/experiment.js";
import { SdeSchema } from "../../dsl/sde.js";
import { defineOp } from "./define.js";

export const ConfigIssueSchema = z.object({ path: z.string(), message: z.string() });

const times = z.array(z.number()).describe("times in [0, 1]");
const series = z.array(z.number());

export const configOps = {
  "config.validate": defineOp({
    // Sent as it is: the worker is the judge here (invalid experiments are answered BAD_REQUEST).
    args: z.strictObject({ experiment: z.custom<ExperimentInput>((v) => typeof v === "object" && v !== null, { message: "expected an experiment object" }) }),
    result: z.object({ experiment: ExperimentSchema, warnings: z.array(ConfigIssueSchema) }),
    compute: false,
    doc: "validate an experiment in Python; answers it normalised, with its warnings",
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

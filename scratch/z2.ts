import { z } from "zod";
import { ExperimentSchema } from "../src/dsl/experiment.ts";
for (const io of ["output", "input"] as const) {
  try {
    const s = z.toJSONSchema(ExperimentSchema, { io, unrepresentable: "any" });
    console.log(io, JSON.stringify(s).length, JSON.stringify(s).slice(0, 400));
  } catch (e) { console.log(io, "ERR", String(e)); }
}

import { z } from "zod";
import { ExperimentSchema } from "../src/dsl/experiment.ts";
import { LossSchema } from "../src/dsl/loss.ts";
const s = z.toJSONSchema(LossSchema, { io: "output", unrepresentable: "any" });
console.log(JSON.stringify(s, null, 1).slice(0, 3000));
const s2 = z.toJSONSchema(LossSchema, { io: "input", unrepresentable: "any" });
console.log(JSON.stringify(s2).slice(0, 1500));

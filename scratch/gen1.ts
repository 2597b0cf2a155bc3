import { buildBundle } from "../src/protocol/codegen/bundle.ts";
const b = buildBundle();
console.log(JSON.stringify(b.experiment).slice(0, 300));
console.log(Object.keys(b.$defs).join(" "));
console.log(JSON.stringify(b.ops["likelihood.nll"].args, null, 1).slice(0, 1500));
import { writeFileSync } from "node:fs";
writeFileSync("scratch/bundle.json", JSON.stringify(b, null, 1));

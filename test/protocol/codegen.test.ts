/**
 * The generated Python side of the schemas: committed files equal what the zod schemas generate
 * (CI fails on a stale generation), and the bundle says what Python relies on.
 */
import { describe, expect, it } from "vitest";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildBundle, snakeCase } from "../../src/protocol/codegen/bundle.js";
import { stale } from "../../src/protocol/codegen/main.js";
import { ops } from "../../src/protocol/ops/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

describe("npm run gen", () => {
  it("leaves no diff: the committed generated files are what the schemas generate", () => {
    expect(stale(ROOT)).toEqual([]);
  });

  it("exports every op with its compute flag, and the resolved experiment with every resolved field required", () => {
    const b = buildBundle();
    expect(Object.keys(b.ops).sort()).toEqual(Object.keys(ops).sort());
    for (const [name, def] of Object.entries(ops)) expect(b.ops[name]!.compute, name).toBe(def.compute);
    const exp = b.$defs.ExperimentConfig!;
    expect(exp["x-py-class"]).toBe("ExperimentConfig");
    expect(exp.required).toEqual(expect.arrayContaining(["name", "sde", "model", "data", "loss", "optim", "training", "eval", "sampling"]));
    expect(b.$defs.BpdConfig!.required).toEqual(expect.arrayContaining(["divergence", "dequantize"]));
    expect(b.$defs.PCSamplingConfig!.required).toEqual(expect.arrayContaining(["N", "eps"]));
    expect(b.$defs.ToyDataConfig!.required).toEqual(expect.arrayContaining(["dim"]));
    // a defaulted field is optional to Python, which fills it from the generated dataclass
    expect(b.$defs.DSMTerm!.required).toEqual(["kind"]);
    expect((b.$defs.DSMTerm!.properties as Record<string, { default?: unknown }>).reduce!.default).toBe("sum");
  });

  it("has one snake_case rule, applied here only", () => {
    expect(snakeCase("snapshotFreqForPreemption")).toBe("snapshot_freq_for_preemption");
    expect(snakeCase("N")).toBe("N");
    expect(snakeCase("beta1")).toBe("beta1");
    expect(snakeCase("finiteDifference")).toBe("finite_difference");
    expect(snakeCase("nStepsEach")).toBe("n_steps_each");
  });
});

import { describe, expect, it } from "vitest";
import { TOY_BUDGETS } from "../../src/api/budgets.js";
import { toyExperiment } from "../../src/api/toy.js";

describe("toy budgets (fpd toy --budget)", () => {
  it("paper: the high-order paper's 100k updates at batch 5000, with the CUDA-graph step, on both data sets", async () => {
    const b = TOY_BUDGETS.paper;
    expect([b.steps, b.batchSize, b.baseSteps + b.finetuneSteps]).toEqual([100_000, 5_000, 100_000]);
    for (const data of ["checkerboard", "mog1d"]) {
      for (const method of ["dsm", "order3", "dsm_fpe"] as const) {
        const e = await toyExperiment({ data, method, steps: b.steps, batchSize: b.batchSize }, [...b.set]);
        expect(e.training).toMatchObject({ nIters: 100_000, batchSize: 5_000, cudaGraph: true });
      }
    }
  });
});

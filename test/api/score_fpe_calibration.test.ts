// The dimension-free score-FPE weights (`calibrate`) and the CUDA-graph flag through the real
// worker: a DSM base fine-tuned with a calibrated score FPE announces the α / β it measured, records
// them in the run directory, and a resumed run reuses them; `training.cudaGraph` on a CPU says why
// it runs the plain step.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { TrainEvent } from "../../src/index.js";
import { applyOverrides, type Experiment } from "../../src/dsl/index.js";
import { getPreset } from "../../configs/index.js";
import { sharedSession } from "../helpers/session.js";

const SMALL = ["model.width=16", "model.timeHidden=[16]", "model.xHidden=[16]", "model.hidden=[32]", "training.batchSize=64", "training.logFreq=1"];

function toy(preset: string, nIters: number, set: string[] = []): Experiment {
  return applyOverrides(getPreset(preset)!.experiment, [...SMALL, `training.nIters=${nIters}`, `training.snapshotFreq=${nIters}`, `training.snapshotFreqForPreemption=${nIters}`, ...set]);
}

const session = sharedSession();

describe("score-FPE calibration in training", () => {
  it("sets α and β from their shares at the fine-tune start, records them, and a resumed run reuses them", async () => {
    const root = mkdtempSync(join(tmpdir(), "fpd-cal-"));
    await session().train(toy("toy/checkerboard_ve_dsm", 10), { runDir: join(root, "base") });
    const base = join(root, "base", "checkpoints", "checkpoint_1.pth");
    const shares = { vectorShare: 1e-3, scalarShare: 1e-2, batches: 2 };
    const tuned = toy("toy/checkerboard_ve_dsm_fpe", 16, ["loss.terms[1].mode=both", "loss.terms[1].weighting=ll", `loss.terms[1].calibrate=${JSON.stringify(shares)}`]);
    const events: TrainEvent[] = [];
    await session().finetune(base, tuned, { runDir: join(root, "ft"), maxSteps: 3, onEvent: (e) => events.push(e) });
    const cal = events.filter((e) => e.type === "calibration");
    expect(cal).toHaveLength(1);
    const c = cal[0] as Extract<TrainEvent, { type: "calibration" }>;
    expect(c).toMatchObject({ term: 1, step: 10, vectorShare: 1e-3, scalarShare: 1e-2, batches: 2, source: "measured" });
    // the shares hold on the calibration batches: α·V / total and β·S / total
    const total = c.measured.rest + c.alpha * c.measured.vector + c.beta * c.measured.scalar;
    expect((c.alpha * c.measured.vector) / total).toBeCloseTo(1e-3, 9);
    expect((c.beta * c.measured.scalar) / total).toBeCloseTo(1e-2, 9);
    const saved = JSON.parse(readFileSync(join(root, "ft", "score_fpe_calibration.json"), "utf8"));
    expect(saved.terms[0].alpha).toBe(c.alpha);
    // resume: the recorded weights, not a new measurement at step 13
    const again: TrainEvent[] = [];
    const { result } = await session().finetune(base, tuned, { runDir: join(root, "ft"), onEvent: (e) => again.push(e) });
    expect(result.step).toBe(16);
    expect(again.filter((e) => e.type === "calibration")).toEqual([{ ...c, source: "recorded" }]);
  });

  it("training.cudaGraph on a CPU runs the plain step and says why", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fpd-graph-"));
    const warnings: string[] = [];
    const { result } = await session().train(toy("toy/checkerboard_ve_order3", 3, ["training.cudaGraph=true"]), {
      runDir: dir,
      onEvent: (e) => e.type === "warning" && warnings.push(e.message),
    });
    expect(result.status).toBe("completed");
    expect(warnings.some((m) => m.includes("training.cudaGraph") && m.includes("CUDA device"))).toBe(true);
    expect(existsSync(join(dir, "checkpoints-meta", "checkpoint.pth"))).toBe(true);
  });
});

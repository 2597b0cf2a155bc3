// `fpd toy` through the real `fpd` binary and worker: the main job on a tiny budget.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fpdJson as fpd, runCli } from "../helpers/cli.js";

// Loose ODE tolerances keep the many tiny evaluations cheap on a loaded machine (the job's numbers
// are what the run measured, whatever the tolerance).
const LOOSE_ODE = ["--set", "eval.bpd.rtol=1e-3", "--set", "eval.bpd.atol=1e-3", "--set", "sampling.rtol=1e-3", "--set", "sampling.atol=1e-3"];
const isPng = (p: string) => readFileSync(p).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

describe("fpd toy (the main job, tiny budget)", () => {
  const jsonKeys = ["protocol", "data", "sde", "budget", "seeds", "control", "methods"];
  const methodKeys = ["name", "nll", "nllStderr", "pairedDiffToControl", "pairedDiffStderr", "massOnSupport", "residualAbs", "scoreError"];

  it("fine-tunes one DSM base with each method and the control, pairs the NLLs, writes report.md/json and pictures", { timeout: 600_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-toy-"));
    const args = ["toy", "--base-steps", "20", "--steps", "10", "--batch", "128", "--seeds", "0,1", "--nll-points", "40", "--grid", "8",
      "--samples", "50", "--times", "3", "--curve-points", "8", "--out", out, "--device", "cpu", ...LOOSE_ODE];
    const r = await fpd(args);
    expect(r.protocol).toBe("finetune");
    expect(r.control).toBe("dsm");
    expect(r.floor).toBeCloseTo(Math.log(32), 4);
    expect(r.base.step).toBe(20);
    // every continuation starts from the base's step and adds the same further updates
    expect(r.models.map((m: any) => [m.method, m.seed, m.step])).toEqual([
      ["dsm", 0, 30], ["order2", 0, 30], ["dsm_fpe", 0, 30], ["dsm", 1, 30], ["order2", 1, 30], ["dsm_fpe", 1, 30]]);
    for (const m of r.models) {
      const metrics = readFileSync(join(m.runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(Math.min(...metrics.map((x: any) => x.step))).toBeGreaterThanOrEqual(20);
      // the demo's schedule: each continuation's lr restarts at 2e-3 and decays by a cosine over its own 10 updates
      const lr = metrics.map((x: any) => x.lr);
      expect(lr[0]).toBeCloseTo(2e-3, 12);
      expect(lr.at(-1)).toBeCloseTo(2e-3 * 0.5 * (1 + Math.cos((Math.PI * 9) / 10)), 12);
      if (m.seed === 0) {
        expect(m.massOnSupport).toBeGreaterThan(0);
        expect(m.massOnSupport).toBeLessThanOrEqual(m.massInGrid + 1e-9);
      } else expect([m.massOnSupport, m.massInGrid]).toEqual([null, null]); // the grid is measured for the models drawn
    }
    const json = JSON.parse(readFileSync(r.reportJson, "utf8"));
    expect(Object.keys(json)).toEqual(jsonKeys);
    expect(json.budget).toEqual({ baseSteps: 20, steps: 10, batch: 128 });
    expect(json.seeds).toEqual([0, 1]);
    expect(json.methods.map((m: any) => m.name)).toEqual(["dsm", "order2", "dsm_fpe"]);
    for (const m of json.methods) {
      expect(Object.keys(m)).toEqual(methodKeys); // --no-fisher by default: no fisherOde
      expect(m.residualAbs.map((p: number[]) => p[0])).toEqual([0.0001, 0.01, 1]);
      expect(m.scoreError).toHaveLength(3);
      for (const [, v] of [...m.residualAbs, ...m.scoreError]) expect(v).toBeGreaterThanOrEqual(0);
      // the pooled NLL is the mean of the seeds' NLLs on the same points
      const seeds = r.models.filter((x: any) => x.method === m.name);
      expect(m.nll).toBeCloseTo((seeds[0].nll + seeds[1].nll) / 2, 9);
    }
    const [control, order2] = json.methods;
    expect(control.pairedDiffToControl).toBe(0);
    expect(control.pairedDiffStderr).toBe(0);
    expect(order2.pairedDiffToControl).toBeCloseTo(order2.nll - control.nll, 9); // paired on the same points
    expect(order2.pairedDiffStderr).toBeGreaterThan(0);
    expect(r.claims.map((c: any) => c.claim)).toHaveLength(3);
    const report = readFileSync(r.report, "utf8");
    expect(report).toContain("Protocol: fine-tune");
    for (const m of json.methods) expect(report).toContain(m.nll.toFixed(4)); // the numbers are the measured ones
    expect(r.figures.map((f: string) => f.split("/").pop())).toEqual(["density.png", "samples.png", "mechanism.png", "nll_diff.png"]);
    for (const f of r.figures) expect(isPng(f)).toBe(true);
    expect(report).toContain("](mechanism.png)");
    // the settings the runs used, read from their experiments (the demo's network, schedule, α)
    expect(report).toContain("hidden [256,256]");
    expect(report).toContain("decaying by a cosine to 0 from update 20 to 30");
    expect(report).toContain("α 0.0001");
  });

  it("--protocol scratch trains each method from scratch and still pairs with the control; a rerun resumes to the same numbers", { timeout: 300_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-toy-scratch-"));
    const args = ["toy", "--protocol", "scratch", "--methods", "order2", "--steps", "5", "--batch", "64", "--seeds", "3", "--nll-points", "20",
      "--grid", "4", "--samples", "20", "--times", "0", "--lr-schedule", "constant", "--out", out, "--device", "cpu", ...LOOSE_ODE];
    const r = await fpd(args);
    expect(r.base).toBeNull();
    expect(r.models.map((m: any) => [m.method, m.seed, m.step])).toEqual([["dsm", 3, 5], ["order2", 3, 5]]);
    const json = JSON.parse(readFileSync(r.reportJson, "utf8"));
    expect(json.budget).toEqual({ baseSteps: 0, steps: 5, batch: 64 });
    expect(json.methods[1].residualAbs).toEqual([]);
    expect(readFileSync(r.report, "utf8")).toContain("Protocol: scratch");
    expect(readFileSync(r.report, "utf8")).toContain("Adam lr 0.002 (constant)");

    const again = await fpd(args); // every run is resumed from its meta checkpoint, then measured again
    expect(again.models.map((m: any) => m.trainSeconds < 30)).toEqual(r.models.map(() => true));
    expect(JSON.parse(readFileSync(again.reportJson, "utf8"))).toEqual(json);
  });

  it("refuses bad seeds and methods with the flag's name", async () => {
    const bad = await runCli(["toy", "--seeds", "0,0"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--seeds");
    const m = await runCli(["toy", "--methods", "dsm,order9"]);
    expect(m.status).toBe(2);
    expect(m.stderr).toContain("--methods");
    expect(m.stderr).toContain("unknown order9; one of dsm, order2, order3, dsm_fpe, order3_fpe");
  });

  it("--budget paper runs the presets as they are with the paper budget's settings (the CUDA-graph step), the user's --set last", { timeout: 240_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-toy-paper-"));
    // the budget's 100k × 5000 cut down by --set (it comes after the budget's own overrides)
    const r = await fpd(["toy", "--budget", "paper", "--protocol", "scratch", "--methods", "dsm", "--set", "training.nIters=3", "--set", "training.batchSize=64",
      "--nll-points", "20", "--grid", "4", "--samples", "20", "--times", "0", "--out", out, "--device", "cpu", ...LOOSE_ODE]);
    const config = JSON.parse(readFileSync(join(r.models[0].runDir, "config.json"), "utf8"));
    expect(config.experiment.training).toMatchObject({ cudaGraph: true, nIters: 3, batchSize: 64 });
    // not the demo's network, schedule or lr: the preset's
    expect(config.experiment.model.hidden).toEqual([512, 512]);
    expect(config.experiment.optim.lr).toBe(1e-3);
    expect(config.experiment.optim.cosineDecayFrom).toBeUndefined();
    expect(r.models[0].step).toBe(3);
    expect(readFileSync(r.report, "utf8")).toContain("the high-order paper's toy budget");
  });

  it("refuses an unknown --budget, naming the ones there are", async () => {
    const r = await runCli(["toy", "--budget", "huge"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--budget[\s\S]*paper/);
  });
});

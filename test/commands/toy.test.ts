// `fpd toy` through the real `fpd` binary and worker: the main job on a tiny budget.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fpdJson as fpd, runCli } from "../helpers/cli.js";

const isPng = (p: string) => readFileSync(p).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

describe("fpd toy (the main job, tiny budget)", () => {
  it("trains every method, measures the ODE NLL against the floor, writes report.md and pictures", { timeout: 240_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-toy-"));
    const r = await fpd(["toy", "--steps", "30", "--batch", "128", "--nll-points", "100", "--grid", "12", "--samples", "200", "--out", out, "--device", "cpu"]);
    expect(r.methods.map((m: { method: string }) => m.method)).toEqual(["dsm", "order3", "dsm_fpe"]);
    expect(r.floor).toBeCloseTo(Math.log(32), 4);
    for (const m of r.methods) {
      expect(Number.isFinite(m.nll)).toBe(true);
      expect(m.gap).toBeCloseTo(m.nll - r.floor, 6);
      expect(m.steps).toBe(30);
      for (const f of ["metrics.jsonl", "config.json", "run.json", "checkpoints-meta/checkpoint.pth"]) expect(existsSync(join(m.runDir, f)), f).toBe(true);
    }
    const report = readFileSync(r.report, "utf8");
    expect(report).toMatch(/\| method \| NLL \(nats\)/);
    for (const m of r.methods) expect(report).toContain(m.nll.toFixed(4)); // the numbers are the measured ones
    expect(r.figures).toHaveLength(2);
    for (const f of r.figures) expect(isPng(f)).toBe(true);
    expect(report).toContain("](density.png)");
  });

  it("--budget paper applies the paper budget's settings (the CUDA-graph step), the user's --set last", { timeout: 240_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-toy-paper-"));
    // the budget's 100k × 5000 cut down by --set (it comes after the budget's own overrides)
    const r = await fpd(["toy", "--budget", "paper", "--methods", "dsm", "--set", "training.nIters=3", "--set", "training.batchSize=64",
      "--nll-points", "20", "--grid", "4", "--samples", "20", "--out", out, "--device", "cpu"]);
    const config = JSON.parse(readFileSync(join(r.methods[0].runDir, "config.json"), "utf8"));
    expect(config.experiment.training).toMatchObject({ cudaGraph: true, nIters: 3, batchSize: 64 });
    expect(r.methods[0].steps).toBe(3);
  });

  it("refuses an unknown --budget, naming the ones there are", async () => {
    const r = await runCli(["toy", "--budget", "huge"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--budget[\s\S]*paper/);
  });
});

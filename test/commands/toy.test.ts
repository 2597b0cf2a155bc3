// `fpd toy` through the real `fpd` binary and worker: the main job on a tiny budget.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fpdJson as fpd } from "../helpers/cli.js";

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
});

// The score-FPE ablation scripts end to end on a tiny budget (real worker, real training): the α
// study's fine-tune protocol and paired statistics, and fpe_weight's absolute residual. The
// recorded results in ablations/results/ are what these scripts write at full size.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { meanSe, paired } from "../../ablations/lib/finetune.js";
import { fpdJson } from "../helpers/cli.js";

const script = (name: string) => fileURLToPath(new URL(`../../ablations/${name}.ts`, import.meta.url));
const params = (p: Record<string, string | number>) => Object.entries(p).flatMap(([k, v]) => ["--param", `${k}=${v}`]);

describe("ablations/lib/finetune statistics", () => {
  it("paired differences and their standard error", () => {
    // differences 1, 2, 3, 6: mean 3, sample sd √(14/3), s.e. sd/2
    const d = paired([2, 4, 6, 10], [1, 2, 3, 4]);
    expect(d.mean).toBe(3);
    expect(d.se).toBeCloseTo(Math.sqrt(14 / 3) / 2, 12);
    expect(Number.isNaN(meanSe([1]).se)).toBe(true);
    expect(() => paired([1, 2], [1])).toThrow(/2 vs 1 points/);
  });
});

describe("ablations/fpe_alpha.ts (tiny budget)", () => {
  it("continues one base per data set with each setting; control rows are 0; calibrated rows hit their shares", { timeout: 600_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-fpe-alpha-"));
    const r = await fpdJson<{ rows: Record<string, any>[] }>([
      "ablate", script("fpe_alpha"), "--out", out, "--device", "cpu",
      ...params({ datasets: "mog1d", seeds: 2, alphas: "1e-3", ms: "2", baseSteps: 20, steps: 4, batch: 64, width: 8, hidden: "16", nllPoints: 24, residualPoints: 16 }),
    ]);
    const by = Object.fromEntries(r.rows.map((row) => [row.setting, row]));
    expect(Object.keys(by).sort()).toEqual(
      ["FP-Diffusion regime", "both, shares 1e-2 / 2e-2", "control", "scalar only, 100× share", "scalar only, 10× share", "scalar only, calibrated", "vector m=2 α=0.001"].sort(),
    );
    expect(by["control"]).toMatchObject({ dNll: 0, seSeeds: 0, sePaired: 0, "resRatio@0.001": 1 });
    const v = by["vector m=2 α=0.001"];
    expect(v.alpha).toBe(1e-3);
    expect(v.share0).toBeGreaterThan(0);
    expect(v.share0).toBeLessThan(1);
    // dNll is the mean of the per-seed paired differences it lists
    const bySeed = String(v.dNllBySeed).split(" ").map(Number);
    expect(bySeed).toHaveLength(2);
    expect(v.dNll).toBeCloseTo((bySeed[0]! + bySeed[1]!) / 2, 4);
    // a different loss continued from the same base: a different model than the control
    expect(v.dNll).not.toBe(0);
    // calibrated rows report the weights the worker set from their shares
    expect(by["both, shares 1e-2 / 2e-2"].share0).toBeCloseTo(0.03, 12);
    expect(by["both, shares 1e-2 / 2e-2"].alpha).toBeGreaterThan(0);
    expect(by["both, shares 1e-2 / 2e-2"].beta).toBeGreaterThan(0);
    expect(by["scalar only, 10× share"]).toMatchObject({ alpha: 0 });
    expect(by["scalar only, 10× share"].beta).toBeGreaterThan(by["scalar only, calibrated"].beta);
    for (const f of ["results.md", "results.csv", "results.png", "small-shares.png", "residual.png"]) expect(existsSync(join(out, f)), f).toBe(true);
  });
});

describe("ablations/fpe_weight.ts (tiny budget)", () => {
  it("reports the absolute residual and its two sides, never a ratio", { timeout: 600_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-fpe-weight-"));
    const r = await fpdJson<{ rows: Record<string, any>[] }>([
      "ablate", script("fpe_weight"), "--out", out, "--device", "cpu",
      ...params({ steps: 3, batch: 64, width: 8, hidden: "16", nllPoints: 16 }),
    ]);
    expect(r.rows).toHaveLength(8);
    for (const row of r.rows) {
      for (const t of [0.01, 0.1, 0.5]) {
        const [res, dts, gp] = [row[`res@${t}`], row[`dts@${t}`], row[`gradPhi@${t}`]];
        expect(res).toBeGreaterThan(0);
        // ‖a − b‖ between | ‖a‖ − ‖b‖ | and ‖a‖ + ‖b‖ per point, so also for the means
        expect(res).toBeLessThanOrEqual(dts + gp + 1e-6 * (dts + gp));
      }
    }
    const md = readFileSync(join(out, "results.md"), "utf8");
    expect(md).toMatch(/\| alpha \| m \| nll \| stderr \| gap \| res@0\.01 /);
    expect(md).not.toMatch(/relative/);
  });
});

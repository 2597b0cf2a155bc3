// The toy job's statistics and verdicts (pure functions; the job itself runs in test/commands/toy.test.ts).
import { describe, expect, it } from "vitest";
import { judgeClaims, logTimes, pairedDifference, type ToyMethodSummary } from "../../src/api/toy.js";

const f = (...v: number[]) => Float64Array.from(v);

describe("pairedDifference", () => {
  it("pairs point by point: a shift common to both models cancels, the noise of the points does not enter", () => {
    const control = [f(1, 5, 9, 2)];
    const method = [f(0.9, 4.9, 8.9, 1.9)];
    const r = pairedDifference(method, control);
    expect(r.diff).toBeCloseTo(-0.1, 12);
    expect(r.stderr).toBeCloseTo(0, 12); // an unpaired comparison would carry sd ≈ 3.6 / 2
    expect(r.stderrSeeds).toBe(0);
  });

  it("adds the point-to-point and seed-to-seed parts", () => {
    const control = [f(0, 0, 0), f(0, 0, 0)];
    const method = [f(1, 2, 3), f(3, 4, 5)]; // seed means 2 and 4; point means over seeds 2, 3, 4
    const r = pairedDifference(method, control);
    expect(r.diff).toBeCloseTo(3, 12);
    expect(r.perSeed).toEqual([2, 4]);
    expect(r.stderrPoints).toBeCloseTo(1 / Math.sqrt(3), 12); // sd(2, 3, 4) = 1
    expect(r.stderrSeeds).toBeCloseTo(Math.SQRT2 / Math.SQRT2, 12); // sd(2, 4) = √2, over √2
    expect(r.stderr).toBeCloseTo(Math.hypot(1 / Math.sqrt(3), 1), 12);
  });

  it("refuses models scored on different points or without a control per seed", () => {
    expect(() => pairedDifference([f(1, 2)], [f(1, 2, 3)])).toThrow(/same points/);
    expect(() => pairedDifference([f(1), f(2)], [f(1)])).toThrow(/one control per seed/);
  });
});

describe("logTimes", () => {
  it("spaces times evenly in log t from 1e-4 to 1", () => {
    expect(logTimes(5)).toEqual([0.0001, 0.001, 0.01, 0.1, 1]);
    expect(logTimes(1)).toEqual([1]);
  });
});

describe("judgeClaims", () => {
  const summary = (name: ToyMethodSummary["name"], over: Partial<ToyMethodSummary>): ToyMethodSummary => ({
    name,
    label: name,
    nll: 4,
    nllStderr: 0.01,
    pairedDiffToControl: 0,
    pairedDiffStderr: 0,
    pairedDiffStderrSeeds: 0,
    pairedDiffStderrPoints: 0,
    perSeed: [],
    massOnSupport: 0.7,
    residualAbs: [[1e-4, 100], [1, 1]],
    dtScore: [],
    gradPhi: [],
    sigmaScore: null,
    sigmaScoreTrue: null,
    scoreError: null,
    fisherOde: null,
    ...over,
  });

  it("judges the three effects on the measured numbers", () => {
    const claims = judgeClaims("checkerboard", [
      summary("dsm", {}),
      summary("order3", { nll: 3.8, massOnSupport: 0.82, pairedDiffToControl: -0.2, pairedDiffStderr: 0.05 }),
      summary("dsm_fpe", { nll: 3.9, residualAbs: [[1e-4, 60], [1, 1]] }),
    ]);
    expect(claims.map((c) => c.reached)).toEqual([true, true, true]);
    expect(claims[0]!.measured).toContain("82.0 %");
    expect(claims[1]!.measured).toContain("Δ = −0.2000 ± 0.0500 nats (-4.0 s.e.)");
    expect(claims[2]!.measured).toContain("0.600×");
  });

  it("says not reached when the effect is within 2 standard errors or absent", () => {
    const claims = judgeClaims("checkerboard", [
      summary("dsm", {}),
      summary("order3", { nll: 3.99, massOnSupport: 0.6, pairedDiffToControl: -0.05, pairedDiffStderr: 0.05 }),
      summary("dsm_fpe", { residualAbs: [[1e-4, 120], [1, 1]] }),
    ]);
    expect(claims.map((c) => c.reached)).toEqual([false, false, false]);
  });

  it("has no mass claim off the checkerboard", () => {
    const claims = judgeClaims("mog1d", [summary("dsm", { massOnSupport: null }), summary("order2", { massOnSupport: null })]);
    expect(claims.map((c) => c.claim)).toEqual([expect.stringContaining("high-order")]);
  });
});

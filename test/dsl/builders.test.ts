import { describe, expect, it } from "vitest";
import {
  ConfigError,
  data,
  evaluation,
  loss,
  model,
  optim,
  sampling,
  schedule,
  sde,
  snakeKeys,
  toCamel,
  toSnake,
  training,
  LossSchema,
} from "../../src/dsl/index.js";
import { presets } from "../../configs/index.js";

function issuePaths(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => i.path);
  }
  throw new Error("expected a ConfigError");
}

describe("builders", () => {
  it("return plain objects with the contract's defaults", () => {
    expect(sde.ve()).toEqual({ kind: "ve", sigmaMin: 0.01, sigmaMax: 50, N: 1000 });
    expect(sde.vp()).toEqual({ kind: "vp", betaMin: 0.1, betaMax: 20, N: 1000, stdFormula: "stable" });
    expect(sde.vp({ stdFormula: "original" }).stdFormula).toBe("original");
    expect(() => sde.vp({ stdFormula: "float32" as never })).toThrow(/stdFormula/);
    expect(sde.subvp({ betaMax: 19.9 })).toEqual({ kind: "subvp", betaMin: 0.1, betaMax: 19.9, N: 1000, stdFormula: "stable" });
    expect(optim.adam()).toEqual({ kind: "adam", lr: 2e-4, beta1: 0.9, eps: 1e-8, weightDecay: 0, warmup: 5000, gradClip: 1 });
    expect(model.mlp()).toEqual({
      kind: "mlp", embedDim: 64, timeHidden: [128, 128], xHidden: [128, 128], width: 128,
      hidden: [512, 512], nonlinearity: "swish", emaRate: 0.999, param: "eps",
    });
    expect(data.toy({ dataset: "checkerboard" })).toEqual({ kind: "toy", dataset: "checkerboard", dim: 2 });
    expect(data.toy({ dataset: "mog1d" }).dim).toBe(1);
    expect(data.toy({ dataset: "gaussian", dim: 5 }).dim).toBe(5);
    expect(data.imagenet32().randomFlip).toBe(false);
    expect(data.cifar10().randomFlip).toBe(true);
    expect(training().nIters).toBe(1300001);
    expect(evaluation({ bpd: { repeats: 5 } }).bpd).toEqual({
      dataset: "test", repeats: 5, solver: "dopri5", rtol: 1e-5, atol: 1e-5, eps: 1e-5, probe: "rademacher",
    });
    expect(sampling.ode()).toEqual({ method: "ode", solver: "dopri5", rtol: 1e-5, atol: 1e-5, noiseRemoval: true });
  });

  it("kind ddpmpp only changes NCSN++'s defaults", () => {
    const n = model.ncsnpp();
    const d = model.ddpmpp();
    const differing = Object.keys(n).filter((k) => JSON.stringify(n[k as keyof typeof n]) !== JSON.stringify(d[k as keyof typeof d]));
    expect(differing.sort()).toEqual(["embeddingType", "emaRate", "fir", "kind", "progressiveInput", "scaleBySigma"].sort());
    expect(Object.keys(n)).toEqual(Object.keys(d));
  });

  it("loss expressions compose with plus and serialise without a trace of it", () => {
    const expr = loss.dsm({ weighting: "likelihood" }).plus(loss.scoreFpe({ alpha: 0.3 })).plus(loss.highOrder({ order: 3 }));
    expect(expr.terms.map((t) => t.kind)).toEqual(["dsm", "scoreFpe", "highOrder"]);
    const json = JSON.parse(JSON.stringify(expr));
    expect(Object.keys(json)).toEqual(["terms"]);
    expect(json).toEqual({ terms: expr.terms });
    expect(Object.keys(expr)).toEqual(["terms"]);
    expect(structuredClone(expr)).toEqual({ terms: expr.terms });
    expect(LossSchema.parse(expr)).toEqual(json);
    expect(loss.sum(loss.dsm(), loss.scoreFpe()).terms).toHaveLength(2);
    // Each term carries every field with its default.
    expect(expr.terms[1]).toEqual({
      kind: "scoreFpe", mode: "both", alpha: 0.3, beta: 0.01, m: 2, weighting: "ll", points: "pert",
      dt: "autodiff", div: "hutchinson", probe: "gaussian",
    });
    expect(loss.scoreFpe({ dt: { finiteDifference: {} } }).terms[0]).toMatchObject({ dt: { finiteDifference: { hs: 1e-3, hd: 5e-4 } } });
    // dimension-free weights: shares of the loss at the start; absent unless asked for
    expect(loss.scoreFpe({ calibrate: { vectorShare: 1e-3 } }).terms[0]).toMatchObject({ calibrate: { vectorShare: 1e-3, batches: 4 } });
    expect(issuePaths(() => loss.scoreFpe({ calibrate: { vectorShare: 0.7, scalarShare: 0.3 } }))).toEqual(["calibrate.vectorShare"]);
  });

  it("reject bad fields with the section's path", () => {
    expect(issuePaths(() => sde.ve({ sigmaMin: -1 }))).toEqual(["sde.sigmaMin"]);
    expect(issuePaths(() => sde.ve({ sigmaMin: 80 }))).toEqual(["sde.sigmaMax"]);
    expect(issuePaths(() => model.ncsnpp({ nf: 1.5, dropout: 2 }))).toEqual(["model.nf", "model.dropout"]);
    expect(issuePaths(() => model.ncsnpp({ typo: 1 } as never))).toEqual(["model.typo"]);
    expect(issuePaths(() => data.cifar10({ imageSize: 64 } as never))).toEqual(["data.imageSize"]);
    expect(issuePaths(() => loss.highOrder({ order: 4 } as never))).toEqual(["order"]);
    expect(issuePaths(() => loss.scoreFpe({ dt: { finiteDifference: { hs: -1 } } }))).toEqual(["dt.finiteDifference.hs"]);
    expect(issuePaths(() => sampling.pc({ predictor: "none", corrector: "none" }))).toEqual(["sampling.corrector"]);
    expect(issuePaths(() => training({ continuous: false } as never))).toEqual(["training.continuous"]);
    expect(issuePaths(() => evaluation({ bpd: { rtol: 0 } }))).toEqual(["eval.bpd.rtol"]);
    expect(() => loss.dsm().plus({} as never)).toThrow(ConfigError);
  });
});

describe("schedules (docs/maths.md §2)", () => {
  const ve = sde.ve();
  const vp = sde.vp();
  const sub = sde.subvp();
  it("VE: σ from σmin to σmax, g² = σ²·2ln(σmax/σmin)", () => {
    expect(schedule.sigma(ve, 0)).toBeCloseTo(0.01, 15);
    expect(schedule.sigma(ve, 1)).toBeCloseTo(50, 12);
    expect(schedule.sigma(ve, 0.5)).toBeCloseTo(Math.sqrt(0.01 * 50), 12);
    expect(schedule.std(ve, 0.3)).toBe(schedule.sigma(ve, 0.3));
    expect(schedule.g2(ve, 0.3)).toBeCloseTo(schedule.sigma(ve, 0.3) ** 2 * 2 * Math.log(5000), 10);
    expect(schedule.meanCoef(ve, 0.7)).toBe(1);
    expect(schedule.label(ve, 0.7)).toBe(schedule.sigma(ve, 0.7));
    expect(schedule.priorStd(ve)).toBe(50);
  });
  it("VP / subVP: β, c(t), mean, std, g²", () => {
    const t = 0.4;
    const c = -0.25 * t * t * (20 - 0.1) - 0.5 * t * 0.1;
    expect(schedule.beta(vp, t)).toBeCloseTo(0.1 + t * 19.9, 14);
    expect(schedule.meanCoef(vp, t)).toBeCloseTo(Math.exp(c), 14);
    expect(schedule.std(vp, t)).toBeCloseTo(Math.sqrt(1 - Math.exp(2 * c)), 14);
    expect(schedule.std(sub, t)).toBeCloseTo(1 - Math.exp(2 * c), 14);
    expect(schedule.g2(vp, t)).toBeCloseTo(0.1 + t * 19.9, 14);
    expect(schedule.g2(sub, t)).toBeCloseTo((0.1 + t * 19.9) * (1 - Math.exp(-2 * 0.1 * t - 19.9 * t * t)), 14);
    expect(schedule.label(vp, t)).toBeCloseTo(999 * t, 12);
    // Small t keeps relative precision (expm1): std ≈ √(β_min t) for VP.
    expect(schedule.std(vp, 1e-9) / Math.sqrt(0.1 * 1e-9)).toBeCloseTo(1, 6);
  });
});

describe("snake_case rule (docs/contracts.md §1)", () => {
  it("converts as the contract says and inverts on every key of every preset", () => {
    expect(toSnake("snapshotFreqForPreemption")).toBe("snapshot_freq_for_preemption");
    expect(toSnake("N")).toBe("N");
    expect(toSnake("beta1")).toBe("beta1");
    expect(toSnake("nIters")).toBe("n_iters");
    expect(toSnake("finiteDifference")).toBe("finite_difference");
    const keys = new Set<string>();
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) { keys.add(k); walk(x); }
    };
    presets.forEach((p) => walk(p.experiment));
    for (const k of keys) expect(toCamel(toSnake(k))).toBe(k);
    expect(keys.size).toBeGreaterThan(80);
    expect(snakeKeys({ aB: [{ cD: 1 }] })).toEqual({ a_b: [{ c_d: 1 }] });
  });
});

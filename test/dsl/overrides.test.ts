import { describe, expect, it } from "vitest";
import { ConfigError, applyOverrides, parseOverride, parseValue } from "../../src/dsl/index.js";
import { getPreset } from "../../configs/index.js";

const base = (name = "fp/ve_cifar10") => getPreset(name)!.experiment;

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("--set parsing", () => {
  it("parses paths with dots and indices", () => {
    expect(parseOverride("model.nf=8")).toEqual({ path: ["model", "nf"], pathText: "model.nf", raw: "8" });
    expect(parseOverride("loss.terms[1].alpha=0.3").path).toEqual(["loss", "terms", 1, "alpha"]);
    expect(parseOverride("loss.terms.1.alpha=0.3").pathText).toBe("loss.terms[1].alpha");
    expect(parseOverride("loss.terms[1].dt.finiteDifference.hs=1e-4").path).toEqual(["loss", "terms", 1, "dt", "finiteDifference", "hs"]);
    expect(parseOverride("name=a=b").raw).toBe("a=b");
    expect(errorOf(() => parseOverride("model.nf")).message).toContain("expected path=value");
    expect(errorOf(() => parseOverride("model..nf=1")).message).toContain("bad path segment");
    expect(errorOf(() => parseOverride("=1")).message).toContain("expected path=value");
  });

  it("reads values by what is at the path", () => {
    expect(parseValue("8", 128)).toBe(8);
    expect(parseValue("1e-4", 2e-4)).toBe(1e-4);
    expect(parseValue("-0.5", 1)).toBe(-0.5);
    expect(parseValue("abc", 128)).toBe("abc");
    expect(parseValue("true", false)).toBe(true);
    expect(parseValue("false", true)).toBe(false);
    expect(parseValue("[1,2,2]", [1, 2, 2, 2])).toEqual([1, 2, 2]);
    expect(parseValue("1,2,2", [1, 2, 2, 2])).toEqual([1, 2, 2]);
    expect(parseValue("16", [16])).toEqual([16]);
    expect(parseValue("", [16])).toEqual([]);
    expect(parseValue("[frobenius, trace]", ["trace"])).toEqual(["frobenius", "trace"]);
    expect(parseValue("123", "old-name")).toBe("123");
    expect(parseValue('"quoted"', undefined)).toBe("quoted");
    expect(parseValue("autodiff", { finiteDifference: { hs: 1, hd: 1 } })).toBe("autodiff");
    expect(parseValue('{"finiteDifference":{"hs":0.001}}', "autodiff")).toEqual({ finiteDifference: { hs: 0.001 } });
    expect(parseValue("2.5", undefined)).toBe(2.5);
    expect(parseValue("x,y", undefined)).toEqual(["x", "y"]);
    expect(parseValue("null", 3)).toBeNull();
  });
});

describe("applyOverrides", () => {
  it("sets numbers, booleans, lists, strings and nested fields, leaving the input untouched", () => {
    const b = base("fp/ve_cifar10_reference");
    const e = applyOverrides(b, [
      "model.nf=8",
      "model.chMult=1,2,2",
      "model.attnResolutions=[8]",
      "data.randomFlip=false",
      "data.path=/data/cifar10",
      "loss.terms[1].alpha=0.3",
      "loss.terms.1.m=1",
      "loss.terms[1].dt.finiteDifference.hs=1e-4",
      "training.batchSize=16",
      "eval.bpd.repeats=5",
      "name=my-run",
    ]);
    expect(e.model).toMatchObject({ nf: 8, chMult: [1, 2, 2], attnResolutions: [8] });
    expect(e.data).toMatchObject({ randomFlip: false, path: "/data/cifar10" });
    expect(e.loss.terms[1]).toMatchObject({ alpha: 0.3, m: 1, dt: { finiteDifference: { hs: 1e-4, hd: 5e-4 } } });
    expect(e.training.batchSize).toBe(16);
    expect(e.eval.bpd.repeats).toBe(5);
    expect(e.name).toBe("my-run");
    expect(b.model).toMatchObject({ nf: 128, chMult: [1, 2, 2, 2] });
    expect(b.loss.terms[1]).toMatchObject({ alpha: 0.15 });
  });

  it("switches a kind to that kind's defaults and removes keys with null", () => {
    const e = applyOverrides(base("ve/cifar10_ncsnpp_continuous"), ["sampling.method=ode", "loss.terms[0].kind=highOrder", "loss.terms[0].order=3", "loss.terms[0].estimator=hutchinson"]);
    expect(e.sampling).toEqual({ method: "ode", solver: "dopri5", rtol: 1e-5, atol: 1e-5, noiseRemoval: true, eps: 1e-5 });
    expect(e.loss.terms[0]).toMatchObject({ kind: "highOrder", order: 3, parts: ["frobenius", "trace"] });
    const v = applyOverrides(base("vp/cifar10_ddpmpp_continuous"), ["sde.kind=subvp"]);
    expect(v.sde).toEqual({ kind: "subvp", betaMin: 0.1, betaMax: 20, N: 1000, stdFormula: "stable" });
    const r = applyOverrides(base(), ["loss.terms[1]=null"]);
    expect(r.loss.terms.map((t) => t.kind)).toEqual(["dsm"]);
    const a = applyOverrides(base(), ['loss.terms[2]={"kind":"highOrder","order":2}', "loss.terms[0].reduce=mean"]);
    expect(a.loss.terms.map((t) => t.kind)).toEqual(["dsm", "scoreFpe", "highOrder"]);
    const s = applyOverrides(base(), ["data.path=/x", "data.path=null"]);
    expect(s.data).not.toHaveProperty("path");
  });

  it("errors name the path, the value and what was expected", () => {
    const e1 = errorOf(() => applyOverrides(base(), ["model.nf=abc"]));
    expect(e1.issues).toHaveLength(1);
    expect(e1.issues[0]!.path).toBe("model.nf");
    expect(e1.message).toContain("model.nf");
    expect(e1.message).toContain("expected number");
    expect(e1.message).toContain("model.nf=abc");

    const e2 = errorOf(() => applyOverrides(base(), ["loss.terms[1].alpha=-1"]));
    expect(e2.issues[0]).toEqual({ path: "loss.terms[1].alpha", message: expect.stringMatching(/>=0.*--set loss\.terms\[1\]\.alpha=-1/) });

    const e3 = errorOf(() => applyOverrides(base(), ["model.nff=8"]));
    expect(e3.issues[0]).toEqual({ path: "model.nff", message: "unknown key (from --set model.nff=8)" });

    const e4 = errorOf(() => applyOverrides(base(), ["sampling.predictor=ancestral"]));
    expect(e4.message).toMatch(/sampling\.predictor: Invalid option: expected one of "reverse_diffusion"\|"euler_maruyama"\|"none" \(from --set sampling\.predictor=ancestral\)/);

    const e5 = errorOf(() => applyOverrides(base("highorder/ve_cifar10_order2"), ["loss.terms[0].reduce=sum"]));
    expect(e5.issues[0]!.path).toBe("loss.terms[0].reduce");
    expect(e5.issues[0]!.message).toContain('needs reduce: "mean"');

    expect(errorOf(() => applyOverrides(base(), ["loss.terms[5].alpha=1"])).message).toContain("loss.terms has 2 entries");
    expect(errorOf(() => applyOverrides(base(), ["model.nf.x=1"])).message).toContain("model.nf is a number, not an object");
    expect(errorOf(() => applyOverrides(base(), ["model[0]=1"])).message).toContain("model is an object, not a list");
    expect(errorOf(() => applyOverrides(base(), ["loss.terms.x=1"])).message).toContain("loss.terms is a list");
    expect(errorOf(() => applyOverrides(base(), ["model.chMult=1,x"])).issues[0]!.path).toBe("model.chMult[1]");
  });
});

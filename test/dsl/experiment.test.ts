import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  ConfigError,
  data,
  experiment,
  lint,
  loss,
  model,
  sde,
  validateExperiment,
  type Experiment,
} from "../../src/dsl/index.js";
import { getPreset, presetNames, presets } from "../../configs/index.js";
import { PRESETS_FIXTURE, applyEdits, cases, pythonCheck } from "./helpers.js";

const wire = (name: string) => JSON.parse(JSON.stringify(getPreset(name)!.experiment)) as Experiment;

describe("presets", () => {
  it("cover the issue's list", () => {
    const names = presetNames();
    for (const n of [
      "ve/cifar10_ncsnpp_continuous", "ve/cifar10_ncsnpp_deep_continuous",
      "vp/cifar10_ddpmpp_continuous", "vp/cifar10_ddpmpp_deep_continuous",
      "subvp/cifar10_ddpmpp_continuous", "subvp/cifar10_ddpmpp_deep_continuous",
      "fp/ve_cifar10", "fp/vp_cifar10",
      "highorder/ve_cifar10_order2", "highorder/ve_cifar10_order3",
      "highorder/ve_cifar10_deep_order3", "highorder/ve_imagenet32_order2", "highorder/ve_imagenet32_deep_order3",
    ]) expect(names).toContain(n);
    // Toys: checkerboard and 1-D MoG, VE and VP, orders 1–3, with and without the score FPE.
    expect(names.filter((n) => n.startsWith("toy/"))).toHaveLength(2 * 2 * 3 * 2);
    for (const p of presets) {
      expect(p.description.length).toBeGreaterThan(10);
      expect(p.description).not.toContain("\n");
    }
  });

  it("every preset validates, without warnings, and re-validates unchanged (JSON round trip)", () => {
    for (const p of presets) {
      const again = experiment(JSON.parse(JSON.stringify(p.experiment)));
      expect(again).toEqual(p.experiment);
      expect(JSON.stringify(again)).toBe(JSON.stringify(p.experiment));
      expect(lint(p.experiment), p.name).toEqual([]);
    }
  });

  it("the fixture the Python tests read is up to date (FPD_UPDATE_FIXTURES=1 rewrites it)", () => {
    const now = JSON.stringify(Object.fromEntries(presets.map((p) => [p.name, p.experiment])), null, 1) + "\n";
    if (process.env.FPD_UPDATE_FIXTURES === "1" || !existsSync(PRESETS_FIXTURE)) writeFileSync(PRESETS_FIXTURE, now);
    expect(readFileSync(PRESETS_FIXTURE, "utf8")).toBe(now);
  });

  it("getPreset returns a copy", () => {
    const a = getPreset("fp/ve_cifar10")!;
    (a.experiment.training as { batchSize: number }).batchSize = 1;
    expect(getPreset("fp/ve_cifar10")!.experiment.training.batchSize).toBe(48);
    expect(getPreset("nope")).toBeUndefined();
  });
});

describe("experiment()", () => {
  it("fills context-dependent defaults", () => {
    const vp = experiment({ name: "x", sde: sde.vp(), model: model.ddpmpp(), data: data.cifar10({ centered: true }), loss: loss.dsm() });
    expect(vp.sampling).toEqual({
      method: "pc", predictor: "euler_maruyama", corrector: "none", snr: 0.16, nStepsEach: 1,
      noiseRemoval: true, probabilityFlow: false, N: 1000, eps: 1e-3,
    });
    expect(vp.eval.bpd).toMatchObject({ dequantize: true, divergence: "hutchinson" });
    expect(vp.optim.kind).toBe("adam");
    expect(vp.training.batchSize).toBe(128);
    const toy = experiment({ name: "t", sde: sde.ve(), model: model.mlp(), data: { kind: "toy", dataset: "mog1d" }, loss: loss.dsm() });
    expect(toy.data).toEqual({ kind: "toy", dataset: "mog1d", dim: 1 });
    expect(toy.sampling).toMatchObject({ predictor: "reverse_diffusion", corrector: "langevin", N: 1000, eps: 1e-5 });
    expect(toy.eval.bpd).toMatchObject({ dequantize: false, divergence: "exact" });
  });

  it("reports every problem with its path", () => {
    try {
      experiment({ ...wire("ve/cifar10_ncsnpp_continuous"), model: { ...wire("ve/cifar10_ncsnpp_continuous").model, nf: "x", typo: 1 } as never, training: { batchSize: 0 } as never });
      throw new Error("no error");
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      expect(e.issues.map((i) => i.path).sort()).toEqual(["model.nf", "model.typo", "training.batchSize"]);
      expect(e.message).toContain("model.typo: unknown key");
      expect(e.path).toBeTruthy();
    }
  });

  it("gives messages that say what to do", () => {
    const r = validateExperiment(applyEdits(wire("highorder/ve_cifar10_order2"), [["loss.terms[0].reduce", "sum"]]));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors).toEqual([{ path: "loss.terms[0].reduce", message: expect.stringContaining('needs reduce: "mean"') }]);
    const r2 = validateExperiment(applyEdits(wire("ve/cifar10_ncsnpp_continuous"), [["model.sigmaMax", 80]]));
    if (!r2.ok) expect(r2.errors[0]!.message).toMatch(/must equal sde\.sigmaMax \(50\), got 80/);
    else throw new Error("expected an error");
  });
});

describe("invalid configs are rejected with their field path; the worker's generated schema refuses the malformed ones alike", () => {
  const bases = Object.fromEntries(presets.map((p) => [p.name, p.experiment]));
  const inputs = cases.invalid.map((c) => applyEdits(bases[c.base], c.edits));
  // One Python process for the presets and every case.
  const answers = pythonCheck([...presets.map((p) => p.experiment), ...inputs]);
  const pyPresets = answers.slice(0, presets.length);
  const pyInvalid = answers.slice(presets.length);

  it("Python accepts every preset and hands it back unchanged", () => {
    presets.forEach((p, i) => {
      expect(pyPresets[i]!.ok, `${p.name}: ${JSON.stringify(pyPresets[i]!.errors)}`).toBe(true);
      expect(pyPresets[i]!.experiment).toEqual(p.experiment);
    });
  });

  cases.invalid.forEach((c, i) => {
    it(c.name, () => {
      const ts = validateExperiment(inputs[i]);
      expect(ts.ok).toBe(false);
      const tsPaths = ts.ok ? [] : ts.errors.map((e) => e.path);
      expect(tsPaths).toContain(c.path);
      const py = pyInvalid[i]!;
      if (c.python === "schema") {
        expect(py.ok).toBe(false);
        const pyPaths = (py.errors ?? []).map((e) => e.path);
        expect(pyPaths).toContain(c.path);
        // Same set of problems on both sides: one schema, exported.
        expect([...new Set(pyPaths)].sort()).toEqual([...new Set(tsPaths)].sort());
      } else {
        // Well-formed: a guard where Python computes refuses it (py/tests/test_config.py), or the
        // rule is TypeScript's alone (docs/contracts.md §1).
        expect(py.ok, JSON.stringify(py.errors)).toBe(true);
      }
    });
  });

  it("warnings are TypeScript's alone", () => {
    for (const c of cases.warnings) {
      const ts = validateExperiment(applyEdits(bases[c.base], c.edits));
      expect(ts.ok, JSON.stringify(ts)).toBe(true);
      if (ts.ok) expect(ts.warnings.map((w) => w.path).sort(), c.name).toEqual([...c.paths].sort());
    }
  });
});

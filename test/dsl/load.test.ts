import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Config } from "@oclif/core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigError } from "../../src/dsl/index.js";
import { listPresets, loadExperiment } from "../../src/dsl/load.js";
import { getPreset, presets } from "../../configs/index.js";
import ConfigList from "../../src/commands/config/list.js";
import ConfigValidate from "../../src/commands/config/validate.js";
import ConfigShow from "../../src/commands/config/show.js";
import { ROOT } from "./helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fpd-dsl-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const dslUrl = pathToFileURL(join(ROOT, "src", "dsl", "index.ts")).href;

async function rejects(p: Promise<unknown>): Promise<ConfigError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("loadExperiment", () => {
  it("loads a preset, with overrides", async () => {
    const l = await loadExperiment("fp/ve_cifar10", { set: ["model.nf=8"] });
    expect(l.source).toEqual({ kind: "preset", ref: "fp/ve_cifar10" });
    expect(l.experiment.model).toMatchObject({ kind: "ncsnpp", nf: 8 });
    expect(l.warnings).toEqual([]);
    expect((await listPresets()).map((p) => p.name)).toEqual(presets.map((p) => p.name));
  });

  it("loads a .ts file that default-exports an experiment (or a function returning one)", async () => {
    const file = join(dir, "my_exp.ts");
    writeFileSync(file, `
import { experiment, sde, model, data, loss, optim, type Experiment } from ${JSON.stringify(dslUrl)};
const e: Experiment = experiment({
  name: "mine",
  sde: sde.ve(),
  model: model.mlp(),
  data: data.toy({ dataset: "checkerboard" }),
  loss: loss.dsm({ reduce: "mean" }).plus(loss.highOrder({ order: 2, estimator: "exact" })),
  optim: optim.adam({ lr: 1e-3 }),
  eval: { bpd: { dequantize: false } },
});
export default e;
`);
    const l = await loadExperiment(file, { set: ["training.batchSize=64"] });
    expect(l.source).toEqual({ kind: "file", ref: file });
    expect(l.experiment.name).toBe("mine");
    expect(l.experiment.training.batchSize).toBe(64);
    expect(l.experiment.loss.terms.map((t) => t.kind)).toEqual(["dsm", "highOrder"]);

    const fn = join(dir, "fn_exp.mts");
    writeFileSync(fn, `export default async () => (${JSON.stringify(getPreset("toy/mog1d_ve_dsm")!.experiment)});\n`);
    expect((await loadExperiment(fn)).experiment).toEqual(getPreset("toy/mog1d_ve_dsm")!.experiment);
  });

  it("loads a .json file relative to cwd, and reports its problems with paths", async () => {
    const good = { ...getPreset("ve/cifar10_ncsnpp_continuous")!.experiment, name: "from-json" };
    writeFileSync(join(dir, "good.json"), JSON.stringify(good));
    expect((await loadExperiment("good.json", { cwd: dir })).experiment).toEqual(good);

    writeFileSync(join(dir, "bad.json"), JSON.stringify({ ...good, model: { ...good.model, nf: -1, extra: true } }));
    const e = await rejects(loadExperiment(join(dir, "bad.json")));
    expect(e.issues.map((i) => i.path).sort()).toEqual(["model.extra", "model.nf"]);

    writeFileSync(join(dir, "broken.json"), "{");
    expect((await rejects(loadExperiment(join(dir, "broken.json")))).message).toContain("not valid JSON");
  });

  it("explains unknown presets, missing files and missing default exports", async () => {
    expect((await rejects(loadExperiment("fp/ve_cifar1"))).message).toMatch(/unknown preset "fp\/ve_cifar1".*did you mean fp\/ve_cifar10/);
    expect((await rejects(loadExperiment("./nope.ts"))).message).toContain("no such file");
    const none = join(dir, "none.ts");
    writeFileSync(none, "export const x = 1;\n");
    expect((await rejects(loadExperiment(none))).message).toContain("no default export");
    const txt = join(dir, "exp.yaml");
    writeFileSync(txt, "a: 1\n");
    expect((await rejects(loadExperiment(txt))).message).toContain("must be .ts");
  });
});

describe("fpd config list / validate / show (oclif commands)", () => {
  let config: Config;
  let printed: string;
  beforeAll(async () => {
    config = await Config.load(ROOT);
  });
  async function run<T>(fn: () => Promise<T>): Promise<T> {
    printed = "";
    const spy = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
      printed += args.map(String).join(" ") + "\n";
    });
    try {
      return await fn();
    } finally {
      spy.mockRestore();
    }
  }

  it("list prints every preset with its description", async () => {
    const r = await run(() => ConfigList.run([], config));
    expect(r.presets).toHaveLength(presets.length);
    for (const p of presets) expect(printed).toContain(p.name);
    expect(printed.split("\n").filter(Boolean)).toHaveLength(presets.length);
    const toys = await run(() => ConfigList.run(["toy/", "--json"], config));
    expect(toys.presets.every((p) => p.name.startsWith("toy/"))).toBe(true);
    expect(JSON.parse(printed)).toEqual(toys);
  });

  it("validate says valid, or lists errors with paths and exits 1", async () => {
    const ok = await run(() => ConfigValidate.run(["highorder/ve_cifar10_order3", "--json"], config));
    expect(ok).toEqual({ config: "highorder/ve_cifar10_order3", valid: true, errors: [], warnings: [] });
    const before = process.exitCode;
    try {
      const bad = await run(() => ConfigValidate.run(["highorder/ve_cifar10_order3", "--set", "loss.terms[0].reduce=sum", "--set", "model.nf=x"], config));
      expect(bad.valid).toBe(false);
      expect(bad.errors.map((e) => e.path).sort()).toEqual(["model.nf"]);
      expect(process.exitCode).toBe(1);
      expect(printed).toContain("error   model.nf");
      const bad2 = await run(() => ConfigValidate.run(["highorder/ve_cifar10_order3", "--set", "loss.terms[0].reduce=sum"], config));
      expect(bad2.errors.map((e) => e.path)).toEqual(["loss.terms[0].reduce"]);
      const warn = await run(() => ConfigValidate.run(["ve/cifar10_ncsnpp_continuous", "--set", "model.kind=ddpmpp"], config));
      expect(warn.valid).toBe(true);
      expect(warn.warnings.map((w) => w.path)).toEqual(["model.kind", "model.embeddingType"]);
      expect(printed).toContain("warning model.kind");
    } finally {
      process.exitCode = before;
    }
  });

  it("show --wire prints the camelCase experiment; show without --json prints readable sections", async () => {
    const wire = await run(() => ConfigShow.run(["toy/checkerboard_ve_dsm", "--wire", "--json", "--set", "training.nIters=10"], config));
    expect(wire).toEqual({ ...getPreset("toy/checkerboard_ve_dsm")!.experiment, training: { ...getPreset("toy/checkerboard_ve_dsm")!.experiment.training, nIters: 10 } });
    await run(() => ConfigShow.run(["fp/vp_cifar10"], config));
    expect(printed).toContain("training:\n  sde: \"vpsde\"");
    expect(printed).toContain("  scalar_fp: \"both\"");
    expect(printed).toContain("loss:\n  terms:\n    [0]");
  });
});

describe("config files that fail", () => {
  it("a .ts file that throws at import is named, with its error", async () => {
    const file = join(dir, "throws.ts");
    writeFileSync(file, 'throw new Error("boom at import");\nexport default {};\n');
    const err = await rejects(loadExperiment(file));
    expect(err.message).toBe(`${file} failed to load: boom at import`);
  });

  it("a default export that never settles times out with a message instead of exit 13", async () => {
    const before = process.env.FPD_CONFIG_TIMEOUT_MS;
    process.env.FPD_CONFIG_TIMEOUT_MS = "1500";
    try {
      const promise = join(dir, "never.ts");
      writeFileSync(promise, "export default new Promise(() => {});\n");
      expect((await rejects(loadExperiment(promise))).message).toMatch(/never\.ts did not produce an experiment within 1\.5 s/);
      const tla = join(dir, "never-tla.mts");
      writeFileSync(tla, "await new Promise(() => {});\nexport default {};\n");
      expect((await rejects(loadExperiment(tla))).message).toMatch(/never-tla\.mts did not produce an experiment within 1\.5 s/);
      const fn = join(dir, "rejects.ts");
      writeFileSync(fn, 'export default async () => { throw new TypeError("no data here"); };\n');
      expect((await rejects(loadExperiment(fn))).message).toBe(`${fn}: its default export failed: TypeError: no data here`);
    } finally {
      if (before === undefined) delete process.env.FPD_CONFIG_TIMEOUT_MS;
      else process.env.FPD_CONFIG_TIMEOUT_MS = before;
    }
  });
});

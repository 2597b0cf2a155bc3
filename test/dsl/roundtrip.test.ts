/**
 * Cross-language checks through a real worker (src/bridge → ZeroMQ → msgpack → py/fpdiff):
 * every preset round-trips TS → Python → TS unchanged; invalid experiments sent raw are refused
 * with BAD_REQUEST naming the same field path as the DSL; the TS schedule helpers agree with
 * fpdiff.sde.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Worker } from "../../src/bridge/index.js";
import { RequestError } from "../../src/protocol/errors.js";
import { configOps } from "../../src/protocol/ops/config.js";
import { schedule, sde, validateExperiment, type Sde } from "../../src/dsl/index.js";
import { presets } from "../../configs/index.js";
import { applyEdits, cases } from "./helpers.js";

let worker: Worker;
beforeAll(async () => {
  worker = await Worker.start();
});
afterAll(async () => {
  await worker?.close();
});

const validateOp = configOps["config.validate"];
const scheduleOp = configOps["config.schedule"];

describe("config.validate", () => {
  it("round-trips every preset TS → msgpack → Python → back unchanged", async () => {
    for (const p of presets) {
      const raw = (await worker.requestRaw("config.validate", { experiment: p.experiment })) as { experiment: unknown };
      expect(raw.experiment, p.name).toEqual(p.experiment);
      // The answer satisfies the op's result schema, and parsing it changes nothing.
      expect(validateOp.result.parse(raw).experiment).toEqual(p.experiment);
    }
  });

  it("refuses malformed experiments sent raw with BAD_REQUEST naming the DSL's field path", async () => {
    const bases = Object.fromEntries(presets.map((p) => [p.name, p.experiment]));
    for (const c of cases.invalid.filter((x) => x.python === "schema")) {
      const input = applyEdits(bases[c.base], c.edits);
      const ts = validateExperiment(input);
      expect(ts.ok).toBe(false);
      const err = await worker.requestRaw("config.validate", { experiment: input }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, c.name).toBeInstanceOf(RequestError);
      const e = err as RequestError;
      expect(e.code).toBe("BAD_REQUEST");
      expect(e.message).toContain(`args.experiment.${c.path}`);
      const first = ts.ok ? "" : ts.errors[0]!.path;
      expect(e.field, c.name).toMatch(/^args\.experiment\./);
      // The field named is one of the problems the DSL reports.
      const tsPaths = ts.ok ? [] : ts.errors.map((x) => `args.experiment.${x.path}`);
      expect(tsPaths, `${c.name} (${first})`).toContain(e.field);
    }
    const notAnObject = await worker.requestRaw("config.validate", { experiment: [1] }).catch((x: unknown) => x);
    expect((notAnObject as RequestError).code).toBe("BAD_REQUEST");
    const unknownArg = await worker.requestRaw("config.validate", { experiment: presets[0]!.experiment, extra: 1 }).catch((x: unknown) => x);
    expect((unknownArg as RequestError).field).toBe("args.extra");
  });

  it("resolves an experiment input in TypeScript before it is sent (the worker only sees resolved ones)", async () => {
    const input = { name: "x", sde: { kind: "vp" }, model: { kind: "ddpmpp" }, data: { kind: "cifar10" }, loss: { terms: [{ kind: "dsm" }] } };
    const r = await worker.request("config.validate", { experiment: input as never });
    expect(r.experiment.sampling).toEqual(expect.objectContaining({ method: "pc", predictor: "euler_maruyama", N: 1000, eps: 1e-3 }));
    expect(r.experiment.eval.bpd.divergence).toBe("hutchinson");
  });
});

describe("config.schedule: TS schedule helpers agree with fpdiff.sde", () => {
  const t = Array.from({ length: 100 }, (_, i) => i / 99);
  const sdes: Sde[] = [
    sde.ve(),
    sde.ve({ sigmaMin: 0.002, sigmaMax: 80 }),
    sde.vp(),
    sde.vp({ betaMin: 0.05, betaMax: 12 }),
    sde.subvp(),
    sde.subvp({ betaMin: 0.2, betaMax: 30 }),
  ];
  const close = (got: number[], want: number[], what: string) => {
    expect(got).toHaveLength(want.length);
    got.forEach((g, i) => {
      const tol = 1e-6 * Math.max(1, Math.abs(want[i]!));
      expect(Math.abs(g - want[i]!), `${what} at t=${t[i]}: ${g} vs ${want[i]}`).toBeLessThanOrEqual(tol);
    });
  };
  for (const s of sdes) {
    it(JSON.stringify(s), async () => {
      const py = scheduleOp.result.parse(await worker.requestRaw("config.schedule", scheduleOp.args.parse({ sde: s, t })));
      close(t.map((x) => schedule.std(s, x)), py.std, "std");
      close(t.map((x) => schedule.g2(s, x)), py.g2, "g2");
      close(t.map((x) => schedule.meanCoef(s, x)), py.meanCoef, "meanCoef");
      close(t.map((x) => schedule.label(s, x)), py.label, "label");
      if (s.kind === "ve") close(t.map((x) => schedule.sigma(s, x)), py.sigma!, "sigma");
      else close(t.map((x) => schedule.beta(s, x)), py.beta!, "beta");
    });
  }

  it("refuses a bad SDE or time with the field's path", async () => {
    const e1 = (await worker.requestRaw("config.schedule", { sde: { kind: "ve", sigmaMin: -1 }, t: [0.5] }).catch((x: unknown) => x)) as RequestError;
    expect(e1.code).toBe("BAD_REQUEST");
    expect(e1.field).toBe("args.sde.sigmaMin");
    const e2 = (await worker.requestRaw("config.schedule", { sde: { kind: "vp" }, t: [0.5, 2] }).catch((x: unknown) => x)) as RequestError;
    expect(e2.field).toBe("args.t[1]");
  });
});

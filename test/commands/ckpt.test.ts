// `fpd ckpt inspect | score | convert` on the original-format fixtures.
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../src/paths.js";
import { fpdJson as fpd, runCli } from "../helpers/cli.js";

const REF = join(PROJECT_ROOT, "test", "fixtures", "reference");
const python = join(PROJECT_ROOT, ".venv", "bin", "python");

describe("fpd ckpt", () => {
  it("inspect names the step, EMA, optimiser and the preset whose layout the file has", async () => {
    const r = await fpd(["ckpt", "inspect", join(REF, "ve_ncsnpp_small_seed0.pth")]);
    expect(r.format).toBe("score_sde");
    expect(r.step).toBe(123);
    expect(r.parameterCount).toBe(251395);
    expect(r.ema.decay).toBeCloseTo(0.999);
    expect(r.optimizer.kind).toBe("Adam");
    expect(r.matchingPresets).toContainEqual({ preset: "ve/cifar10_ncsnpp_continuous", overrides: { nf: 8 } });
  });

  it("score reproduces the original code's outputs on the fixture inputs", async () => {
    const out = join(mkdtempSync(join(tmpdir(), "fpd-ckpt-")), "scores.npz");
    const r = await fpd([
      "ckpt", "score", join(REF, "vp_ddpmpp_small_seed0.pth"),
      "--preset", "vp/cifar10_ddpmpp_continuous", "--set", "model.nf=8",
      "--input", join(REF, "vp_ddpmpp_small_seed0_io.pt"), "--out", out, "--device", "cpu",
    ]);
    expect(r.out).toBe(out);
    // compare with the expected outputs stored in the fixture, in Python (the .pt needs torch)
    const check = `
import sys, numpy as np, torch
sys.path.insert(0, "${join(PROJECT_ROOT, "py")}")
from fpdiff.safe_load import safe_torch_load
io, _ = safe_torch_load("${join(REF, "vp_ddpmpp_small_seed0_io.pt")}")
got = np.load("${out}")
rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
print(max(rel(got["score"], io["score_ema"].numpy()), rel(got["output"], io["model_out_ema"].numpy())))
`;
    const script = join(mkdtempSync(join(tmpdir(), "fpd-ckpt-")), "check.py");
    writeFileSync(script, check);
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(python, [script], { encoding: "utf8" }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
    );
    expect(Number(stdout.trim())).toBeLessThan(1e-5);
  });

  it("a file of the wrong architecture is refused with the preset it does match", async () => {
    const p = await runCli(["ckpt", "score", join(REF, "vp_ddpmpp_small_seed0.pth"), "--preset", "ve/cifar10_ncsnpp_continuous", "--set", "model.nf=8", "--input", join(REF, "vp_ddpmpp_small_seed0_io.pt"), "--out", "/tmp/never.npz"]);
    expect(p.status).toBe(2);
    expect(p.stderr).toMatch(/vp\/cifar10_ddpmpp_continuous/);
  });
});

// `fpd ckpt inspect | score | convert` on the original-format fixtures.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../src/paths.js";

const bin = fileURLToPath(new URL("../../bin/run.js", import.meta.url));
const REF = join(PROJECT_ROOT, "test", "fixtures", "reference");
const fpd = (args: string[]) => JSON.parse(execFileSync(process.execPath, [bin, ...args, "--json"], { encoding: "utf8" }));
const python = join(PROJECT_ROOT, ".venv", "bin", "python");

describe("fpd ckpt", () => {
  it("inspect names the step, EMA, optimiser and the preset whose layout the file has", () => {
    const r = fpd(["ckpt", "inspect", join(REF, "ve_ncsnpp_small_seed0.pth")]);
    expect(r.format).toBe("score_sde");
    expect(r.step).toBe(123);
    expect(r.parameterCount).toBe(251395);
    expect(r.ema.decay).toBeCloseTo(0.999);
    expect(r.optimizer.kind).toBe("Adam");
    expect(r.matchingPresets).toContainEqual({ preset: "ve/cifar10_ncsnpp_continuous", overrides: { nf: 8 } });
  });

  it("score reproduces the original code's outputs on the fixture inputs", () => {
    const out = join(mkdtempSync(join(tmpdir(), "fpd-ckpt-")), "scores.npz");
    const r = fpd([
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
    const p = spawnSync(python, [script], { encoding: "utf8" });
    expect(p.status, p.stderr).toBe(0);
    expect(Number(p.stdout.trim())).toBeLessThan(1e-5);
  });

  it("a file of the wrong architecture is refused with the preset it does match", () => {
    const p = spawnSync(process.execPath, [bin, "ckpt", "score", join(REF, "vp_ddpmpp_small_seed0.pth"), "--preset", "ve/cifar10_ncsnpp_continuous", "--set", "model.nf=8", "--input", join(REF, "vp_ddpmpp_small_seed0_io.pt"), "--out", "/tmp/never.npz"], { encoding: "utf8" });
    expect(p.status).toBe(2);
    expect(p.stderr).toMatch(/vp\/cifar10_ddpmpp_continuous/);
  });
});

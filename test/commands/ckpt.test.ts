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
from fpdiff.checkpoints import safe_torch_load
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

// flax training states of score_flow / score_sde (JAX), read without JAX (issue 10).
const FLAX = join(PROJECT_ROOT, "test", "fixtures", "reference", "flax");
const VP = "score_flow_vp_cifar10_ddpmpp_continuous_nf8_seed0";
const VE = "score_sde_ve_cifar10_ncsnpp_continuous_nf8_seed0";
const flaxFile = (name: string) => join(FLAX, name, "checkpoints", "checkpoint_123");

function py(script: string): Promise<string> {
  const file = join(mkdtempSync(join(tmpdir(), "fpd-ckpt-")), "script.py");
  writeFileSync(file, script);
  return new Promise<string>((resolve, reject) =>
    execFile(python, [file], { encoding: "utf8" }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
  );
}

// Each case starts one or two workers (and the fine-tune trains two steps): more than the default
// minute on a loaded two-core machine.
describe("fpd ckpt with flax (score_flow / score_sde JAX) files", { timeout: 240_000 }, () => {
  it("inspect reads a score_flow work directory: format, step, EMA rate, lr, parameters, preset", async () => {
    const r = await fpd(["ckpt", "inspect", join(FLAX, VP)]);
    expect(r.path).toBe(flaxFile(VP));
    expect(r.format).toBe("flax");
    expect(r.container).toBe("msgpack");
    expect(r.step).toBe(123);
    expect(r.adamStep).toBe(123);
    expect(r.parameterCount).toBe(247419);
    expect(r.ema.decay).toBe(0.9999);
    expect(r.ema.numUpdates).toBeNull();
    expect(r.optimizer.lr).toBe(2e-4);
    expect(r.matchingPresets).toContainEqual({ preset: "vp/cifar10_ddpmpp_continuous", overrides: { nf: 8 } });
    const plain = await runCli(["ckpt", "inspect", flaxFile(VE)]);
    expect(plain.status).toBe(0);
    expect(plain.stdout).toMatch(/flax \(score_flow \/ score_sde JAX training state\), step 123/);
    expect(plain.stdout).toMatch(/ve\/cifar10_ncsnpp_continuous --set model\.nf=8/);
  });

  it("done means: `fpd ckpt score <flax file> --preset … --set model.nf=8 --input x.npz` reproduces the fixture", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fpd-flax-"));
    // x.npz in PyTorch's layout (NCHW) with the fixture's times
    await py(`
import numpy as np
z = np.load("${join(FLAX, VP + ".npz")}")
np.savez("${join(dir, "x.npz")}", x=z["x"].transpose(0, 3, 1, 2), t=z["t"])
`);
    const out = join(dir, "scores.npz");
    const r = await fpd([
      "ckpt", "score", flaxFile(VP), "--preset", "scoreflow/vp/cifar10_ddpmpp_continuous", "--set", "model.nf=8",
      "--input", join(dir, "x.npz"), "--out", out, "--device", "cpu",
    ]);
    expect(r.step).toBe(123);
    expect(r.checkpoint.format).toBe("flax");
    // per sample: |Δ| / max|expected|; outputs to float32 (1e-5); scores to 1e-5 except at t[1],
    // inside score_flow's high-precision std branch, where the stable std differs by 1.6e-4
    const errs = JSON.parse(await py(`
import json, numpy as np
z = np.load("${join(FLAX, VP + ".npz")}"); got = np.load("${out}")
rel = lambda a, b: (np.abs(a - b).reshape(4, -1).max(1) / np.abs(b).reshape(4, -1).max(1)).tolist()
print(json.dumps({"out": rel(got["output"].transpose(0, 2, 3, 1), z["net_out_params_ema"]),
                  "score": rel(got["score"].transpose(0, 2, 3, 1), z["score_params_ema"])}))
`));
    expect(Math.max(...errs.out)).toBeLessThan(1e-5);
    expect(Math.max(errs.score[0], errs.score[2], errs.score[3])).toBeLessThan(1e-5);
    expect(errs.score[1]).toBeLessThan(2e-4);
  });

  it("score --layout nhwc takes the JAX fixture as it is (VE: the score is the output)", async () => {
    const out = join(mkdtempSync(join(tmpdir(), "fpd-flax-")), "ve.npz");
    await fpd([
      "ckpt", "score", flaxFile(VE), "--preset", "ve/cifar10_ncsnpp_continuous", "--set", "model.nf=8",
      "--input", join(FLAX, VE + ".npz"), "--layout", "nhwc", "--out", out, "--weights", "model",
    ]);
    const err = Number(await py(`
import numpy as np
z = np.load("${join(FLAX, VE + ".npz")}"); got = np.load("${out}")
print(max((np.abs(got[k] - z[r]).reshape(4, -1).max(1) / np.abs(z[r]).reshape(4, -1).max(1)).max() for k, r in (("output", "net_out_params"), ("score", "score_params"))))
`));
    expect(err).toBeLessThan(1e-5);
  });

  it("convert --to score_sde writes the PyTorch Score SDE layout that plain torch.load reads", async () => {
    const out = join(mkdtempSync(join(tmpdir(), "fpd-flax-")), "checkpoint_0.pth");
    const r = await fpd(["ckpt", "convert", flaxFile(VE), "--to", "score_sde", "--out", out]);
    expect(r.format).toBe("score_sde");
    expect(r.step).toBe(123);
    const seen = (await py(`
import torch
raw = torch.load("${out}", map_location="cpu")
print(sorted(raw), raw["step"], raw["ema"]["num_updates"], all(k.startswith("module.") for k in raw["model"]), len(raw["optimizer"]["state"]))
`)).trim();
    expect(seen).toBe("['ema', 'model', 'optimizer', 'step'] 123 None True 570");
  });

  it("finetune --from a flax work directory runs and continues its step", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fpd-flax-"));
    await py(`
import pickle, os, numpy as np
d = "${join(dir, "data", "cifar-10-batches-py")}"; os.makedirs(d)
rng = np.random.default_rng(0)
for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, open(os.path.join(d, n), "wb"), protocol=2)
`);
    const r = await fpd([
      "finetune", "scoreflow/vp/cifar10_ddpmpp_continuous", "--from", join(FLAX, VP), "--set", "model.nf=8",
      "--set", `data.path=${join(dir, "data")}`, "--set", "training.batchSize=2", "--set", "training.nIters=125",
      // in-loop evaluation off: the final snapshot would draw a 1000-step PC sample of DDPM++ on the CPU
      "--run-dir", join(dir, "run"), "--device", "cpu", "--no-eval",
    ]);
    expect(r.step).toBe(125);
    const after = await fpd(["ckpt", "inspect", join(dir, "run")]);
    expect(after.format).toBe("score_sde");
    expect(after.step).toBe(125);
    expect(after.ema.numUpdates).toBeNull(); // the JAX code's constant-rate EMA carries on
  });

  it("sample --checkpoint takes a flax file (model.load, as eval does)", async () => {
    const out = join(mkdtempSync(join(tmpdir(), "fpd-flax-")), "s.npy");
    const r = await fpd([
      "sample", "scoreflow/vp/cifar10_ddpmpp_continuous", "--checkpoint", flaxFile(VP), "--set", "model.nf=8",
      "--n", "2", "--method", "pc", "--steps", "3", "--device", "cpu", "--out", out,
    ]);
    expect(r.shape).toEqual([2, 3, 32, 32]);
  });

  it("a FIFO given as a checkpoint is refused at once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fpd-fifo-"));
    const fifo = join(dir, "checkpoint.pth");
    await new Promise<void>((resolve, reject) =>
      execFile("mkfifo", [fifo], (err) => (err ? reject(err) : resolve())),
    );
    const t0 = Date.now();
    const p = await runCli(["ckpt", "inspect", fifo]);
    expect(p.status).toBe(2);
    expect(p.stderr.replace(/\s*›\s*/g, " ")).toMatch(/is a FIFO \(named pipe\), not a checkpoint file/);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

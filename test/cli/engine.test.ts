// The training and evaluation commands through the real `fpd` binary and worker.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BIN as bin, fpdJson as fpd, runCli } from "../helpers/cli.js";
const isPng = (p: string) => readFileSync(p).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

describe("fpd toy (the main job, tiny budget)", () => {
  it("trains every method, measures the ODE NLL against the floor, writes report.md and pictures", { timeout: 240_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-toy-"));
    const r = await fpd(["toy", "--steps", "30", "--batch", "128", "--nll-points", "100", "--grid", "12", "--samples", "200", "--out", out, "--device", "cpu"]);
    expect(r.methods.map((m: { method: string }) => m.method)).toEqual(["dsm", "order3", "dsm_fpe"]);
    expect(r.floor).toBeCloseTo(Math.log(32), 4);
    for (const m of r.methods) {
      expect(Number.isFinite(m.nll)).toBe(true);
      expect(m.gap).toBeCloseTo(m.nll - r.floor, 6);
      expect(m.steps).toBe(30);
      for (const f of ["metrics.jsonl", "config.json", "run.json", "checkpoints-meta/checkpoint.pth"]) expect(existsSync(join(m.runDir, f)), f).toBe(true);
    }
    const report = readFileSync(r.report, "utf8");
    expect(report).toMatch(/\| method \| NLL \(nats\)/);
    for (const m of r.methods) expect(report).toContain(m.nll.toFixed(4)); // the numbers are the measured ones
    expect(r.figures).toHaveLength(2);
    for (const f of r.figures) expect(isPng(f)).toBe(true);
    expect(report).toContain("](density.png)");
  });
});

describe("train, evaluate, sample from the CLI", () => {
  const dir = mkdtempSync(join(tmpdir(), "fpd-cli-"));
  const runDir = join(dir, "run");
  const sets = ["--set", "training.nIters=20", "--set", "training.batchSize=128", "--set", "training.snapshotFreq=10", "--set", "training.logFreq=5"];

  it("fpd train writes a run and reports it", async () => {
    // in-loop evaluation is test/cli/scale.test.ts's subject; here the run only feeds the commands below
    const r = await fpd(["train", "toy/checkerboard_ve_order2", ...sets, "--run-dir", runDir, "--device", "cpu", "--no-eval"]);
    expect(r.status).toBe("completed");
    expect(r.step).toBe(20);
    expect(r.lastMetrics.terms).toHaveProperty("dsm");
    expect(r.checkpoints.some((c: { path: string }) => c.path.endsWith("checkpoint_2.pth"))).toBe(true);
  });

  it("fpd eval bpd / loss / fpe and fpd sample work on that run", { timeout: 180_000 }, async () => {
    const bpd = await fpd(["eval", "bpd", "--run", runDir, "--n", "50", "--device", "cpu"]);
    expect(bpd.n).toBe(50);
    expect(Number.isFinite(bpd.nll)).toBe(true);
    expect(bpd.bpd).toBeNull(); // toy data: nats only
    const loss = await fpd(["eval", "loss", "--run", runDir, "--n", "64", "--device", "cpu"]);
    expect(Object.keys(loss.terms)).toEqual(expect.arrayContaining(["dsm"]));
    const fpe = await fpd(["eval", "fpe", "--run", runDir, "--t", "0.1,0.5", "--n", "32", "--plot", join(dir, "fpe.png"), "--device", "cpu"]);
    expect(fpe.t).toEqual([0.1, 0.5]);
    expect(fpe.residual.every((v: number) => v >= 0)).toBe(true);
    expect(isPng(join(dir, "fpe.png"))).toBe(true);
    const s = await fpd(["sample", "--run", runDir, "--n", "40", "--method", "ode", "--out", join(dir, "x.npy"), "--plot", join(dir, "x.png"), "--device", "cpu"]);
    expect(s.shape).toEqual([40, 2]);
    const npy = readFileSync(join(dir, "x.npy"));
    expect(npy.subarray(0, 6).toString("latin1")).toBe("\x93NUMPY");
    expect(npy.byteLength).toBe(128 + 40 * 2 * 4);
  });

  it("Ctrl-C stops `fpd train` cleanly with a meta checkpoint, exit 130", async () => {
    const d = join(dir, "interrupted");
    const child = spawn(process.execPath, [bin, "train", "toy/checkerboard_ve_dsm", "--set", "training.nIters=1000000", "--set", "training.batchSize=64", "--set", "training.logFreq=1", "--run-dir", d, "--device", "cpu"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (c: Buffer) => {
      err += c.toString();
      if (/step \d+/.test(err) && !child.killed) child.kill("SIGINT");
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    expect(code).toBe(130);
    expect(err).toMatch(/Interrupted: stopping cleanly/);
    expect(existsSync(join(d, "checkpoints-meta", "checkpoint.pth"))).toBe(true);
    expect(JSON.parse(readFileSync(join(d, "run.json"), "utf8")).status).toBe("cancelled");
  });

  it("bad configs and flags are refused with the field named", async () => {
    const bad = runCli;
    const r1 = await bad(["train", "toy/checkerboard_ve_dsm", "--set", "optim.lr=fast"]);
    expect(r1.status).toBe(2);
    expect(r1.stderr).toMatch(/optim\.lr/);
    const r2 = await bad(["eval", "bpd"]);
    expect(r2.status).toBe(2);
    expect(r2.stderr).toMatch(/--run/);
    const r3 = await bad(["finetune", "fp/ve_cifar10", "--from", "/no/such.pth", "--set", "model.nf=8"]);
    expect(r3.status).toBe(2);
    expect(r3.stderr).toMatch(/no such|not found|No such/i);
  });
});

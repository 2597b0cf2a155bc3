// `fpd train` through the real `fpd` binary and worker.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BIN as bin, fpdJson as fpd, runCli } from "../helpers/cli.js";

describe("fpd train", () => {
  const dir = mkdtempSync(join(tmpdir(), "fpd-cli-"));
  const runDir = join(dir, "run");
  const sets = ["--set", "training.nIters=20", "--set", "training.batchSize=128", "--set", "training.snapshotFreq=10", "--set", "training.logFreq=5"];

  it("fpd train writes a run and reports it", async () => {
    // in-loop evaluation is test/commands/scale.test.ts's subject; here the run only feeds the checks below
    const r = await fpd(["train", "toy/checkerboard_ve_order2", ...sets, "--run-dir", runDir, "--device", "cpu", "--no-eval"]);
    expect(r.status).toBe("completed");
    expect(r.step).toBe(20);
    expect(r.lastMetrics.terms).toHaveProperty("dsm");
    expect(r.checkpoints.some((c: { path: string }) => c.path.endsWith("checkpoint_2.pth"))).toBe(true);
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

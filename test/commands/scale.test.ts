// Running at scale through the real `fpd` binary: a two-process training job (PyTorch's elastic
// launcher, gloo on the CPU) with evaluation during training, then sampling in shards.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Session } from "../../src/api/session.js";
import { resolvePython } from "../../src/bridge/python.js";
import { fpdJson as fpd, runCli } from "../helpers/cli.js";

/** max |a − b| of the `samples` arrays of two .npz shards (read by NumPy in the project's Python). */
function shardDiff(a: string, b: string): number {
  const code = "import sys, numpy as np; x, y = (np.load(p)['samples'] for p in sys.argv[1:]); print(float(abs(x.astype(float) - y).max()) if x.shape == y.shape else 'shape')";
  return Number(execFileSync(resolvePython().python, ["-c", code, a, b], { encoding: "utf8" }).trim());
}

describe("fpd at scale (2 processes, CPU)", () => {
  const dir = mkdtempSync(join(tmpdir(), "fpd-scale-"));
  const runDir = join(dir, "run");
  const sets = [
    "--set", "training.nIters=4", "--set", "training.batchSize=64", "--set", "training.snapshotFreq=2",
    "--set", "training.logFreq=1", "--set", "training.evalFreq=2", "--set", "training.snapshotSamples=6",
    "--set", "training.snapshotBpd=4", "--set", "sampling.solver=rk4", "--set", "eval.bpd.solver=rk4",
  ];

  it("fpd train --nproc 2 trains with DDP, evaluates on the schedule and logs TensorBoard", { timeout: 300_000 }, async () => {
    const r = await fpd(["train", "toy/checkerboard_ve_order2", ...sets, "--run-dir", runDir, "--device", "cpu", "--nproc", "2"]);
    expect(r.status).toBe("completed");
    expect(r.step).toBe(4);
    const lines = readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.loss !== undefined).map((l) => l.step)).toEqual([0, 1, 2, 3]);
    expect(lines.filter((l) => l.kind === "eval").map((l) => l.step)).toEqual([0, 2]);
    expect(lines.find((l) => l.kind === "eval")).toHaveProperty("eval/high_order.frobenius");
    const samples = lines.filter((l) => l.kind === "samples");
    expect(samples.map((l) => l.step)).toEqual([2, 4]);
    expect(samples.every((l) => l.n === 6)).toBe(true); // gathered from both ranks
    expect(lines.filter((l) => l.kind === "bpd").map((l) => l.n)).toEqual([4, 4]);
    expect(readdirSync(join(runDir, "tensorboard")).some((f) => f.startsWith("events.out.tfevents"))).toBe(true);
    expect(existsSync(join(runDir, "samples", "iter_2", "sample.png"))).toBe(true);
    expect(existsSync(join(runDir, "checkpoints-meta", "checkpoint.pth"))).toBe(true);
  });

  it("fpd sample --num writes shards reproducibly, whatever the number of processes", { timeout: 300_000 }, async () => {
    const a = await fpd(["sample", "--run", runDir, "--num", "10", "--batch-size", "4", "--shards", join(dir, "a"), "--method", "pc", "--steps", "4", "--device", "cpu", "--nproc", "2"]);
    expect(a.shards).toHaveLength(3);
    expect(a.world).toBe(2);
    const b = await fpd(["sample", "--run", runDir, "--num", "10", "--batch-size", "4", "--shards", join(dir, "b"), "--method", "pc", "--steps", "4", "--device", "cpu"]);
    expect(b.world).toBe(1);
    // the same units from the same seeds; the ranks run with fewer threads, which may round
    // matrix products differently — nothing more
    for (let i = 0; i < 3; i++) expect(shardDiff(a.shards[i], b.shards[i])).toBeLessThan(1e-4);
    // the same request again finds every unit done
    const again = await fpd(["sample", "--run", runDir, "--num", "10", "--batch-size", "4", "--shards", join(dir, "b"), "--method", "pc", "--steps", "4", "--device", "cpu"]);
    expect(again.shards).toEqual(b.shards);
    const other = await runCli(["sample", "--run", runDir, "--num", "12", "--batch-size", "4", "--shards", join(dir, "b"), "--device", "cpu"]);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/other settings \(.*n: 10 → 12/);
  });

  it("fpd eval fid / fid-stats exist and refuse what they cannot evaluate", { timeout: 120_000 }, async () => {
    for (const cmd of [["eval", "fid"], ["eval", "fid-stats"]]) {
      const h = await runCli([...cmd, "--help"]);
      expect(h.status).toBe(0);
      expect(h.stdout).toMatch(/Inception/);
    }
    const r = await runCli(["eval", "fid", "--run", runDir, "--num", "4", "--stats", join(dir, "nope.npz"), "--device", "cpu"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/FID is for image models/);
    const s = await runCli(["eval", "fid-stats", "--dataset", "cifar10", "--data", join(dir, "no-data"), "--out", join(dir, "s.npz"), "--device", "cpu", "--json"]);
    expect(s.status).toBe(2);
    const err = JSON.parse(s.stdout).error;
    expect(err.code).toBe("BAD_REQUEST");
    expect(err.path).toBe("args.data.path");
    expect(err.message).toMatch(/no-data: no such file/);
  });

  it("fpd eval bpd --dataset covers the whole split on 2 processes, and running it again continues from --out", { timeout: 300_000 }, async () => {
    // a synthetic CIFAR-10 in the official python format (6 test images) and a small NCSN++
    const session = await Session.open({ device: "cpu" });
    let data: string;
    try {
      data = (await session.request("data.synthetic", { path: join(dir, "cifar"), imagesPerFile: 6, seed: 3 })).path;
    } finally {
      await session.close();
    }
    const exp = join(dir, "img.json");
    writeFileSync(exp, JSON.stringify({
      name: "img/bpd-cli", sde: { kind: "ve" }, data: { kind: "cifar10", path: data }, loss: { terms: [{ kind: "dsm" }] },
      model: { kind: "ncsnpp", nf: 8, chMult: [1, 2], numResBlocks: 1, attnResolutions: [16] },
    }));
    const out = join(dir, "bpd");
    const argv = ["eval", "bpd", exp, "--dataset", "test", "--out", out, "--method", "euler", "--steps", "10", "--repeats", "2", "--batch-size", "4", "--seed", "5", "--device", "cpu"];
    const two = await fpd([...argv, "--nproc", "2"]);
    expect(two.world).toBe(2);
    expect(two.complete).toBe(true);
    expect(two.images).toBe(6);
    expect(two.repeats.map((r: { images: number }) => r.images)).toEqual([6, 6]);
    expect(Number.isFinite(two.bpd) && two.bpd > 0).toBe(true);
    expect(two.settings.dequantize).toBe(true);
    expect(JSON.parse(readFileSync(join(out, "result.json"), "utf8")).bpd).toBe(two.bpd);
    // one process, same directory: every unit is already there, so nothing is recomputed
    const again = await fpd(argv);
    expect(again.world).toBe(1);
    expect(again.bpd).toBe(two.bpd);
    expect(again.computeSeconds).toBe(two.computeSeconds);
    // another setting in the same directory is refused, naming it
    const other = await runCli([...argv.filter((a) => a !== "--seed" && a !== "5"), "--seed", "6"]);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/seed/);
  });
});

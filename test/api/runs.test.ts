// Run directories (src/api/runs.ts) as Session.train uses them, with real workers and real files:
// one process per directory, changed experiments refused, damaged files named, resuming without
// the meta checkpoint, and what a killed run leaves behind.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { getPreset } from "../../configs/index.js";
import { ConfigChangedError, RunDirError, RunLockedError } from "../../src/api/runs.js";
import { applyOverrides, type Experiment } from "../../src/dsl/index.js";
import { RequestError, Session, type TrainEvent } from "../../src/index.js";
import { BIN } from "../helpers/cli.js";
import { sharedSession } from "../helpers/session.js";

function toy(set: string[] = []): Experiment {
  return applyOverrides(getPreset("toy/checkerboard_ve_dsm")!.experiment, [
    "training.batchSize=64",
    "training.nIters=12",
    "training.logFreq=1",
    "training.snapshotFreq=4",
    "training.snapshotFreqForPreemption=100",
    "training.deterministic=true",
    ...set,
  ]);
}

const tmp = () => mkdtempSync(join(tmpdir(), "fpd-runs-"));

/** Wait until process `pid` has exited (a killed process can take a moment to release its files). */
async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`process ${pid} did not exit`);
}
const read = (p: string) => readFileSync(p, "utf8");
const json = (p: string) => JSON.parse(read(p));

const session = sharedSession();

describe("one training process per run directory", () => {
  it("a second one is refused naming the holder; the lock is released by the kernel when the holder dies", { timeout: 120_000 }, async () => {
    const dir = tmp();
    const holder = await Session.open({ device: "cpu" });
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const first = holder
      .train(toy(["training.nIters=1000000"]), { runDir: dir, onEvent: (e) => e.type === "metrics" && started() })
      .catch((e: unknown) => e);
    await running;
    const config = read(join(dir, "config.json"));
    const lines = read(join(dir, "metrics.jsonl")).split("\n").length;

    const err = (await session().train(toy(["optim.lr=0.01"]), { runDir: dir }).catch((e: unknown) => e)) as RunLockedError;
    expect(err).toBeInstanceOf(RunLockedError);
    expect(err.code).toBe("RUN_LOCKED");
    expect(err.message).toContain(`pid ${process.pid}`);
    expect(err.message).toContain(`worker pid ${holder.worker.pid}`);
    expect(read(join(dir, "config.json"))).toBe(config); // the refused process wrote nothing
    expect(read(join(dir, "metrics.jsonl")).split("\n").length).toBeGreaterThanOrEqual(lines);

    holder.worker.kill("SIGKILL"); // no clean-up runs: only the kernel can release the lock
    await first;
    await holder.close();
    const { result } = await session().train(toy(["training.nIters=3"]), { runDir: dir, allowConfigChange: true });
    expect(result.status).toBe("completed");
  });

  it("two `fpd train` on one directory: the second exits 4 naming the first's pid", { timeout: 300_000 }, async () => {
    const dir = tmp();
    const args = ["train", "toy/checkerboard_ve_dsm", "--set", "training.nIters=1000000", "--set", "training.batchSize=64", "--run-dir", dir, "--device", "cpu"];
    const first = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    await new Promise<void>((resolve) =>
      first.stderr.on("data", (c: Buffer) => {
        err += c.toString();
        if (/step \d+/.test(err)) resolve();
      }),
    );
    const second = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, ...args, "--set", "optim.lr=0.01"], { stdio: ["ignore", "ignore", "pipe"] });
      let e = "";
      p.stderr.on("data", (c: Buffer) => (e += c.toString()));
      p.on("exit", (code) => resolve({ code, stderr: e }));
    });
    first.kill("SIGINT");
    await new Promise((r) => first.on("exit", r));
    expect(second.code).toBe(4);
    expect(second.stderr).toContain(`in use by another fpdiff process: pid ${first.pid}`);
    // the first run's experiment, not the second's
    expect(json(join(dir, "config.json")).experiment.optim.lr).toBe(getPreset("toy/checkerboard_ve_dsm")!.experiment.optim.lr);
  });
});

describe("continuing a run with a different experiment", () => {
  it("is refused without touching config.json; --allow-config-change records both; an unfit network still leaves it alone", { timeout: 120_000 }, async () => {
    const dir = tmp();
    await session().train(toy(["training.nIters=4"]), { runDir: dir });
    const config = read(join(dir, "config.json"));
    const mtime = statSync(join(dir, "config.json")).mtimeMs;

    const refused = (await session().train(toy(["optim.lr=0.01", "training.batchSize=32"]), { runDir: dir }).catch((e: unknown) => e)) as ConfigChangedError;
    expect(refused).toBeInstanceOf(ConfigChangedError);
    expect(refused.code).toBe("CONFIG_CHANGED");
    expect(refused.details.changes.map((c) => c.path)).toEqual(["optim.lr", "training.batchSize"]);
    expect(refused.message).toMatch(/optim\.lr: 0\.001 → 0\.01/);
    expect(read(join(dir, "config.json"))).toBe(config);
    expect(statSync(join(dir, "config.json")).mtimeMs).toBe(mtime);

    // running longer, or evaluating it otherwise during training, is not a different experiment
    const longer = await session().train(toy(["training.nIters=6", "training.snapshotBpd=8", "training.snapshotSamples=16", "training.tensorboard=false"]), { runDir: dir });
    expect(longer.result.step).toBe(6);

    const { result } = await session().train(toy(["optim.lr=0.01", "training.nIters=8"]), { runDir: dir, allowConfigChange: true });
    expect(result.steps).toBe(2);
    expect(json(join(dir, "config.json")).experiment.optim.lr).toBe(0.01);
    const change = json(join(dir, "run.json")).history.find((h: { event: string }) => h.event === "config-change");
    expect(change.changes).toEqual([{ path: "optim.lr", from: 0.001, to: 0.01 }]);
    expect(change.from.optim.lr).toBe(0.001);
    expect(change.to.optim.lr).toBe(0.01);

    const changed = read(join(dir, "config.json"));
    const unfit = (await session().train(toy(["model.width=16", "training.nIters=10"]), { runDir: dir, allowConfigChange: true }).catch((e: unknown) => e)) as RequestError;
    expect(unfit).toBeInstanceOf(RequestError);
    expect(unfit.code).toBe("BAD_REQUEST");
    expect(read(join(dir, "config.json"))).toBe(changed); // the worker refused: config.json still describes the checkpoints
    const history = json(join(dir, "run.json")).history.filter((h: { event: string }) => h.event === "config-change");
    expect(history).toHaveLength(1); // and the refused change is not recorded as made
  });
});

describe("damaged or missing files", () => {
  it("a corrupt run.json or config.json is named", async () => {
    const dir = tmp();
    await session().train(toy(["training.nIters=2"]), { runDir: dir });
    const record = read(join(dir, "run.json"));
    writeFileSync(join(dir, "run.json"), record.slice(0, 40));
    const e1 = (await session().train(toy(["training.nIters=2"]), { runDir: dir }).catch((e: unknown) => e)) as RunDirError;
    expect(e1).toBeInstanceOf(RunDirError);
    expect(e1.path).toBe(join(dir, "run.json"));
    expect(e1.message).toMatch(new RegExp(`^${join(dir, "run.json")}: the run record is not valid JSON`));
    writeFileSync(join(dir, "run.json"), record);
    writeFileSync(join(dir, "config.json"), "{ not json");
    const e2 = (await session().train(toy(["training.nIters=2"]), { runDir: dir }).catch((e: unknown) => e)) as RunDirError;
    expect(e2.path).toBe(join(dir, "config.json"));
    expect(e2.message).toContain(join(dir, "config.json"));
    expect(read(join(dir, "config.json"))).toBe("{ not json"); // named, not overwritten
  });

  it("without the meta checkpoint a run resumes from its newest snapshot and overwrites nothing", { timeout: 60_000 }, async () => {
    const dir = tmp();
    await session().train(toy(), { runDir: dir, maxSteps: 10 });
    rmSync(join(dir, "checkpoints-meta", "checkpoint.pth"));
    const warnings: string[] = [];
    const { result } = await session().train(toy(), {
      runDir: dir,
      onEvent: (e: TrainEvent) => e.type === "warning" && warnings.push(e.message),
    });
    expect(result.status).toBe("completed");
    expect(result.steps).toBe(12 - 9); // from checkpoint_2 (step 9), not from 0
    expect(warnings.some((w) => /newest intact snapshot .*checkpoint_2\.pth \(step 9\)/.test(w))).toBe(true);
  });
});

describe("after a killed run", () => {
  it("the next start marks it interrupted and removes the temporary files its writers left", { timeout: 120_000 }, async () => {
    const dir = tmp();
    const cli = spawn(process.execPath, [BIN, "train", "toy/checkerboard_ve_dsm", "--set", "training.nIters=1000000", "--set", "training.batchSize=64", "--run-dir", dir, "--device", "cpu"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    await new Promise<void>((resolve) =>
      cli.stderr.on("data", (c: Buffer) => {
        err += c.toString();
        if (/step \d+/.test(err)) resolve();
      }),
    );
    const holder = json(join(dir, ".fpd-lock"));
    expect(holder.pid).toBe(cli.pid);
    // the machine "stops": both processes die at once, nothing is cleaned up
    process.kill(holder.worker, "SIGKILL");
    cli.kill("SIGKILL");
    await new Promise((r) => cli.on("exit", r));
    await gone(holder.worker);
    expect(json(join(dir, "run.json")).status).toBe("running");
    const debris = [join(dir, "checkpoints", ".checkpoint_7.pth.k2j3h4.tmp"), join(dir, `run.json.${cli.pid}.tmp`)];
    for (const d of debris) writeFileSync(d, "half a file");
    writeFileSync(join(dir, "checkpoints", "notes.tmp"), "not ours"); // not a writer's temporary name: kept

    await session().train(toy(["training.nIters=2"]), { runDir: dir, allowConfigChange: true });
    const record = json(join(dir, "run.json"));
    const interrupted = record.history.find((h: { event: string }) => h.event === "interrupted");
    expect(interrupted).toBeDefined();
    expect(record.history.find((h: { event: string }) => h.event === "cleaned").files.sort()).toEqual(debris.sort());
    for (const d of debris) expect(existsSync(d)).toBe(false);
    expect(readdirSync(join(dir, "checkpoints"))).toContain("notes.tmp");
  });
});

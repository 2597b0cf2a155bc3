// Session.train (src/api/session.ts) with the real worker: run directories, resume after a killed
// worker, cancellation, divergence, fine-tuning from an original-format checkpoint.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Session, WorkerCrashedError, RequestError } from "../../src/index.js";
import { applyOverrides, type Experiment } from "../../src/dsl/index.js";
import { getPreset } from "../../configs/index.js";
import { PROJECT_ROOT } from "../../src/paths.js";
import { sharedSession } from "../helpers/session.js";

const FIXTURE = join(PROJECT_ROOT, "test", "fixtures", "reference", "ve_ncsnpp_small_seed0.pth");

function toy(set: string[] = []): Experiment {
  return applyOverrides(getPreset("toy/checkerboard_ve_dsm")!.experiment, [
    "training.batchSize=128",
    "training.nIters=40",
    "training.logFreq=1",
    "training.snapshotFreq=20",
    "training.snapshotFreqForPreemption=10",
    "training.deterministic=true",
    ...set,
  ]);
}

const tmp = () => mkdtempSync(join(tmpdir(), "fpd-train-"));
const losses = (dir: string) =>
  Object.fromEntries(
    readFileSync(join(dir, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; loss: number; kind?: string })
      .filter((m) => m.kind === undefined) // training lines; evaluation lines carry a kind
      .map((m) => [m.step, m.loss]),
  );

const session = sharedSession();

describe("training runs", () => {
  it("writes the run directory: config, metrics, checkpoints in the original layout, registry", async () => {
    const dir = tmp();
    const events: string[] = [];
    const { run, result } = await session().train(toy(), { runDir: dir, onEvent: (e) => events.push(e.type) });
    expect(result.status).toBe("completed");
    expect(result.step).toBe(40);
    for (const f of ["config.json", "metrics.jsonl", "run.json", "checkpoints/checkpoint_1.pth", "checkpoints/checkpoint_2.pth", "checkpoints-meta/checkpoint.pth"]) {
      expect(existsSync(join(dir, f)), f).toBe(true);
    }
    expect(events).toEqual(expect.arrayContaining(["progress", "metrics", "checkpoint"]));
    expect(Object.keys(losses(dir))).toHaveLength(40);
    const record = JSON.parse(readFileSync(join(dir, "run.json"), "utf8"));
    expect(record.status).toBe("completed");
    expect(record.checkpoints.map((c: { path: string }) => c.path)).toContain(join(dir, "checkpoints", "checkpoint_2.pth"));
    expect(record.checkpoints.every((c: { sha256: string }) => /^[0-9a-f]{64}$/.test(c.sha256))).toBe(true);
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(config.experiment.name).toBe("toy/checkerboard_ve_dsm");
    expect(config.original.training.n_iters).toBe(40);
    // the trained model stays loaded in the worker under its handle
    const nll = await session().request("toy.nll", { model: run.path.split("/").pop()!, n: 50 });
    expect(Number.isFinite(nll.nll)).toBe(true);
  });

  it("a worker killed mid-run resumes from the meta checkpoint with the losses of an uninterrupted run", async () => {
    const straight = tmp();
    await session().train(toy(), { runDir: straight });
    const reference = losses(straight);

    const broken = tmp();
    const victim = await Session.open({ device: "cpu" });
    let killed = false;
    const crashed = await victim
      .train(toy(), {
        runDir: broken,
        onEvent: (e) => {
          // after the meta checkpoint at step 20, kill the worker outright
          if (e.type === "checkpoint" && e.kind === "meta" && e.step >= 20 && !killed) {
            killed = true;
            victim.worker.kill("SIGKILL");
          }
        },
      })
      .catch((e: unknown) => e);
    expect(crashed).toBeInstanceOf(WorkerCrashedError);
    await victim.close();
    expect(JSON.parse(readFileSync(join(broken, "run.json"), "utf8")).status).toBe("failed");

    const { result } = await session().train(toy(), { runDir: broken });
    expect(result.status).toBe("completed");
    expect(result.steps).toBeLessThan(40); // it continued rather than restarted
    const resumed = losses(broken);
    for (const [step, loss] of Object.entries(reference)) expect(resumed[step], `step ${step}`).toBe(loss);
  });

  it("cancel writes a meta checkpoint and leaves the run resumable", async () => {
    const dir = tmp();
    const ac = new AbortController();
    let seen = 0;
    const err = await session()
      .train(toy(["training.nIters=100000", "training.snapshotFreqForPreemption=100000"]), {
        runDir: dir,
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === "metrics" && ++seen === 5) ac.abort();
        },
      })
      .catch((e: unknown) => e);
    expect((err as RequestError).code).toBe("CANCELLED");
    const record = JSON.parse(readFileSync(join(dir, "run.json"), "utf8"));
    expect(record.status).toBe("cancelled");
    const meta = record.checkpoints.find((c: { kind: string }) => c.kind === "meta");
    expect(meta.step).toBeGreaterThanOrEqual(5);
    const info = await session().request("ckpt.inspect", { path: join(dir, "checkpoints-meta", "checkpoint.pth") });
    expect(info.step).toBe(meta.step);
  });

  it("a diverging run stops with DIVERGED and keeps its last good checkpoint intact", async () => {
    const dir = tmp();
    await session().train(toy(["training.nIters=10"]), { runDir: dir });
    const good = JSON.parse(readFileSync(join(dir, "run.json"), "utf8")).checkpoints.find((c: { kind: string }) => c.kind === "meta");
    expect(good.step).toBe(10);
    // the same run continued with a learning rate that blows it up
    const exp = toy(["optim.lr=1e12", "optim.gradClip=-1", "training.nIters=2000", "training.snapshotFreqForPreemption=1000", "training.snapshotFreq=1000"]);
    const err = (await session().train(exp, { runDir: dir, allowConfigChange: true }).catch((e: unknown) => e)) as RequestError;
    expect(err.code).toBe("DIVERGED");
    expect(err.message).toMatch(/diverged at step 1[01]/);
    expect(err.message).toContain(good.path); // it names the last good checkpoint
    const record = JSON.parse(readFileSync(join(dir, "run.json"), "utf8"));
    expect(record.status).toBe("diverged");
    const info = await session().request("ckpt.inspect", { path: good.path });
    expect(info.sha256).toBe(good.sha256); // the last good file is untouched
    expect(info.step).toBe(10);
  });
});

describe("fine-tuning", () => {
  it("two steps from the original-format fixture continue its step, EMA and Adam state", async () => {
    const dir = tmp();
    const data = join(dir, "data");
    await session().request("data.synthetic", { path: data, imagesPerFile: 8 });
    const base = getPreset("fp/ve_cifar10")!.experiment;
    const exp = applyOverrides(base, [
      "model.nf=8",
      `data.path=${data}`,
      "training.batchSize=2",
      "training.nIters=125",
      "training.logFreq=1",
      "training.snapshotFreq=1000",
      "training.snapshotFreqForPreemption=1000",
    ]);
    const before = await session().request("ckpt.inspect", { path: FIXTURE });
    expect(before.step).toBe(123);
    // in-loop evaluation off: its final snapshot would draw 1000-step PC samples of NCSN++ on the CPU
    const { result, run } = await session().finetune(FIXTURE, exp, { runDir: join(dir, "run"), evaluate: false });
    expect(result.steps).toBe(2);
    expect(result.step).toBe(125);
    const after = await session().request("ckpt.inspect", { path: join(run.path, "checkpoints", "checkpoint_0.pth") });
    expect(after.step).toBe(125);
    expect(after.ema!.numUpdates).toBe(before.ema!.numUpdates! + 2);
    expect(after.ema!.decay).toBe(before.ema!.decay);
    expect(after.optimizer!.stateEntries).toBe(before.optimizer!.stateEntries);
    // warm-up lr of the original: lr · min(step / warmup, 1) at the last update (step 124)
    expect(after.optimizer!.lr).toBeCloseTo((2e-4 * 124) / 5000, 12);
    expect(Object.keys(losses(run.path)).map(Number)).toEqual([123, 124]);
  });
});

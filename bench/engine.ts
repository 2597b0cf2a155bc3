/**
 * Bridge overhead of training (`npm run bench:engine`): the same toy training driven from
 * TypeScript (Session.train → train.run, with its progress / metrics / checkpoint events) and run
 * directly in Python (bench/engine/direct_loop.py: fpdiff.train.train, no worker, no events),
 * alternated, medians compared. Both do the same work: train.run's in-loop evaluation (held-out
 * losses at k = 0, samples at the final snapshot, TensorBoard) runs on both sides (direct_loop
 * --evaluate). Target: ratio ≤ 1.02. Writes bench/results/engine.ts_vs_direct.json.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Session } from "../src/api/session.js";
import { resolvePython, workerEnv } from "../src/bridge/python.js";
import { applyOverrides } from "../src/dsl/index.js";
import { getPreset } from "../configs/index.js";
import { PROJECT_ROOT } from "../src/paths.js";
import { machine, median } from "./machine.js";

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const steps = flag("steps", 300);
const batch = flag("batch", 1000);
const repeats = flag("repeats", 3);
const log = (s: string) => console.error(`[bench:engine] ${s}`);

const experiment = applyOverrides(getPreset("toy/checkerboard_ve_dsm")!.experiment, [
  `training.nIters=${steps}`,
  `training.batchSize=${batch}`,
  "training.logFreq=10",
  "training.snapshotFreq=1000000000",
  "training.snapshotFreqForPreemption=1000000000",
]);
const scratch = mkdtempSync(join(tmpdir(), "fpd-bench-engine-"));
const expFile = join(scratch, "experiment.json");
writeFileSync(expFile, JSON.stringify(experiment));

function direct(): number {
  const r = spawnSync(resolvePython().python, ["bench/engine/direct_loop.py", "--experiment", expFile, "--steps", String(steps), "--repeats", "1", "--no-write", "--evaluate"], {
    cwd: PROJECT_ROOT,
    env: workerEnv(), // the worker's environment exactly: threads, allocator, OpenMP policy
    encoding: "utf8",
  });
  const m = /loop ([0-9.]+) s/.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`direct loop failed: ${r.stderr}`);
  return Number(m[1]);
}

const session = await Session.open({ device: "cpu" });
const rows: { mode: string; loopSeconds: number; wallSeconds: number; events: number }[] = [];
try {
  for (let i = 0; i < repeats; i++) {
    const dir = join(scratch, `run-${i}`);
    let events = 0;
    const t0 = performance.now();
    const { result } = await session.train(experiment, { runDir: dir, onEvent: () => events++ });
    const wall = (performance.now() - t0) / 1000;
    rows.push({ mode: "typescript", loopSeconds: result.seconds, wallSeconds: wall, events });
    log(`typescript: loop ${result.seconds.toFixed(3)} s, wall ${wall.toFixed(3)} s, ${events} events`);
    rmSync(dir, { recursive: true, force: true });
    const d = direct();
    rows.push({ mode: "direct", loopSeconds: d, wallSeconds: d, events: 0 });
    log(`direct:     loop ${d.toFixed(3)} s`);
  }
} finally {
  await session.close();
  rmSync(scratch, { recursive: true, force: true });
}
const ts = median(rows.filter((r) => r.mode === "typescript").map((r) => r.loopSeconds));
const tsWall = median(rows.filter((r) => r.mode === "typescript").map((r) => r.wallSeconds));
const py = median(rows.filter((r) => r.mode === "direct").map((r) => r.loopSeconds));
const result = {
  benchmark: "engine.ts_vs_direct",
  machine: machine({ threads: process.env.FPD_THREADS ?? "all cores" }),
  experiment: experiment.name,
  steps,
  batch,
  rows,
  medianLoopSecondsTypescript: ts,
  medianWallSecondsTypescript: tsWall,
  medianLoopSecondsDirect: py,
  ratio: ts / py,
  target: 1.02,
  verdict: ts / py <= 1.02 ? "met" : "missed",
  evaluate: true,
  note: "both sides run train.run's in-loop evaluation; loop seconds are the training loop's own time (train.run's `seconds` vs fpdiff.train.train's); the TypeScript wall time adds the run's set-up (network build, first batch)",
};
const out = join(PROJECT_ROOT, "bench", "results", "engine.ts_vs_direct.json");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
log(`ratio ${result.ratio.toFixed(3)} (target ≤ 1.02)`);

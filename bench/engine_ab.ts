/**
 * Side-by-side training benchmark: this checkout against another built checkout (e.g. main before
 * a change), in one process. Each round trains the same toy experiment through each checkout's
 * Session (train.run in its own worker) and runs each checkout's direct Python loop
 * (bench/engine/direct_loop.py, no worker); rounds alternate A/B/B/A so machine load falls on both
 * alike. Results are paired per round: ratio this/baseline of the TypeScript-driven loop and of
 * the direct loop (below 1: faster). train.run runs with evaluate: false and the direct loop
 * without --evaluate, so that both sides do the same work as a baseline that predates in-loop
 * evaluation (its held-out losses and final snapshot samples cost ~3.5 s of a 300-step toy run).
 *
 *   node dist/bench/engine_ab.js --baseline /path/to/other/checkout [--rounds 4] [--steps 300]
 *     [--batch 1000] [--out file.json]
 *
 * The baseline needs its own `dist/` (npm run build there); its `.venv` may be a link to this one's.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { PROJECT_ROOT } from "../src/paths.js";
import { machine, median } from "./machine.js";

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const baselineDir = arg("baseline");
if (!baselineDir) throw new Error("--baseline <checkout with dist/> is required");
const rounds = Number(arg("rounds") ?? 4);
const steps = Number(arg("steps") ?? 300);
const batch = Number(arg("batch") ?? 1000);
const log = (s: string) => console.error(`[bench:engine-ab] ${s}`);

interface TrainSession {
  train(experiment: unknown, opts: { runDir: string; evaluate?: boolean }): Promise<{ result: { seconds: number } }>;
  close(): Promise<void>;
}
interface Checkout {
  name: string;
  root: string;
  session: TrainSession;
  experiment: unknown;
  experimentFile: string;
  python: string;
  env: NodeJS.ProcessEnv;
}

const scratch = mkdtempSync(join(tmpdir(), "fpd-bench-engine-ab-"));

/** Everything from the checkout's own modules, so each side builds its experiment with its own DSL. */
async function open(name: string, root: string): Promise<Checkout> {
  const mod = (p: string) => import(pathToFileURL(join(root, "dist", p)).href);
  const [{ Session }, { resolvePython, workerEnv }, { applyOverrides }, { getPreset }] = await Promise.all([
    mod("src/api/session.js"),
    mod("src/bridge/python.js"),
    mod("src/dsl/index.js"),
    mod("configs/index.js"),
  ]);
  const experiment = applyOverrides(getPreset("toy/checkerboard_ve_dsm").experiment, [
    `training.nIters=${steps}`,
    `training.batchSize=${batch}`,
    "training.logFreq=10",
    "training.snapshotFreq=1000000000",
    "training.snapshotFreqForPreemption=1000000000",
  ]);
  const experimentFile = join(scratch, `${name}.json`);
  writeFileSync(experimentFile, JSON.stringify(experiment));
  const session = (await Session.open({ device: "cpu" })) as TrainSession;
  return { name, root, session, experiment, experimentFile, python: resolvePython().python, env: workerEnv() };
}

async function viaTypescript(c: Checkout, round: number): Promise<number> {
  const runDir = join(scratch, `${c.name}-${round}`);
  const { result } = await c.session.train(c.experiment, { runDir, evaluate: false });
  rmSync(runDir, { recursive: true, force: true });
  return result.seconds;
}

function direct(c: Checkout): number {
  const r = spawnSync(c.python, ["bench/engine/direct_loop.py", "--experiment", c.experimentFile, "--steps", String(steps), "--repeats", "1", "--no-write"], {
    cwd: c.root,
    env: c.env,
    encoding: "utf8",
  });
  const m = /loop ([0-9.]+) s/.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`${c.name}: direct loop failed: ${r.stderr}`);
  return Number(m[1]);
}

const loadBefore = machine({}).loadAverage;
const checkouts = [await open("baseline", resolve(baselineDir)), await open("this", PROJECT_ROOT)];
const rows: { round: number; checkout: string; typescript: number; direct: number }[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    for (const c of r % 2 === 0 ? checkouts : [...checkouts].reverse()) {
      const ts = await viaTypescript(c, r);
      const d = direct(c);
      rows.push({ round: r, checkout: c.name, typescript: ts, direct: d });
      log(`round ${r + 1} ${c.name}: typescript ${ts.toFixed(2)} s, direct ${d.toFixed(2)} s`);
    }
  }
} finally {
  for (const c of checkouts) await c.session.close();
  rmSync(scratch, { recursive: true, force: true });
}

/** Per-round ratio this/baseline, so a slow round slows both sides of its own ratio. */
const ratios = (key: "typescript" | "direct") =>
  Array.from({ length: rounds }, (_, r) => {
    const of = (name: string) => rows.find((x) => x.round === r && x.checkout === name)![key];
    return of("this") / of("baseline");
  });
const side = (name: string) => ({
  medianTypescriptSeconds: median(rows.filter((x) => x.checkout === name).map((x) => x.typescript)),
  medianDirectSeconds: median(rows.filter((x) => x.checkout === name).map((x) => x.direct)),
});
const result = {
  benchmark: "engine A/B",
  machine: { ...machine({ threads: process.env.FPD_THREADS ?? "all cores" }), loadAverageBefore: loadBefore },
  baseline: resolve(baselineDir),
  experiment: "toy/checkerboard_ve_dsm",
  steps,
  batch,
  rounds,
  evaluate: false,
  note: "loop seconds, without in-loop evaluation on either side; rounds alternate A/B/B/A in one process; ratios this/baseline per round (below 1: faster)",
  rows,
  baselineResult: side("baseline"),
  thisResult: side("this"),
  ratios: {
    typescriptPerRound: ratios("typescript"),
    directPerRound: ratios("direct"),
    typescriptMedian: median(ratios("typescript")),
    directMedian: median(ratios("direct")),
  },
};
const out = resolve(arg("out") ?? join(PROJECT_ROOT, "bench", "results", "engine.ab.json"));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result.ratios, null, 2));

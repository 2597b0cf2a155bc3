/**
 * The toy main job (`fpd toy`, `npm run demo`): train several losses on the same toy data with the
 * same budget, measure each ScoreODE's NLL by the probability-flow ODE against the entropy floor,
 * draw the densities and samples, and write report.md. Every number in the report is what the run
 * measured.
 */
import { existsSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { applyOverrides, type Experiment } from "../dsl/index.js";
import type { OpResult } from "../protocol/ops/index.js";
import type { Panel } from "../protocol/ops/toy.js";
import type { Tensor } from "../protocol/tensor.js";
import { atomicWrite, type RunDir } from "./runs.js";
import type { Session, TrainEvent } from "./session.js";
import { toMarkdown, type Row } from "./table.js";

export const TOY_METHODS = {
  dsm: { preset: "dsm", label: "first-order DSM" },
  order2: { preset: "order2", label: "DSM + 2nd order" },
  order3: { preset: "order3", label: "DSM + 2nd + 3rd order" },
  dsm_fpe: { preset: "dsm_fpe", label: "DSM + score FPE" },
  order3_fpe: { preset: "order3_fpe", label: "3rd order + score FPE" },
} as const;
export type ToyMethod = keyof typeof TOY_METHODS;

export interface ToyJobOptions {
  data: "checkerboard" | "mog1d";
  sde?: "ve" | "vp";
  methods: ToyMethod[];
  /** Training updates per method (the same for all: the budget). */
  steps: number;
  batchSize: number;
  /** Fresh test points for the NLL. */
  nllPoints: number;
  /** Grid points per axis for the density pictures. */
  gridPoints: number;
  samples: number;
  /** Where the runs and the report go. */
  outDir: string;
  /** Extra `--set` overrides applied to every method's experiment. */
  set?: string[];
  signal?: AbortSignal;
  /** Per-method training events, phase changes and evaluation progress, for display. */
  onEvent?: (method: ToyMethod, event: ToyJobEvent) => void;
}

export type ToyPhase = "train" | "nll" | "density" | "samples";
export type ToyJobEvent =
  | TrainEvent
  | { type: "phase"; phase: ToyPhase }
  | { type: "evalProgress"; phase: ToyPhase; done: number; total: number; nfe: number };

export interface ToyMethodResult {
  method: ToyMethod;
  label: string;
  experiment: string;
  steps: number;
  trainSeconds: number;
  lastLoss: number | null;
  nll: number;
  nllStderr: number;
  floor: number | null;
  gap: number | null;
  nfe: number;
  /** The ODE solver of the NLL: dopri5, or the fixed-step fallback after it failed. */
  solver: string;
  runDir: string;
}

export interface ToyJobResult {
  data: string;
  floor: number | null;
  methods: ToyMethodResult[];
  report: string;
  figures: string[];
  seconds: number;
}

/**
 * A toy preset (`toy/<data>_<sde>_<method>`) sized to a budget: `steps` updates at `batchSize`,
 * one snapshot at the end, meta checkpoints every quarter, ~50 metrics lines; then `set`.
 */
export async function toyExperiment(
  spec: { data: string; sde?: string | undefined; method: ToyMethod; steps: number; batchSize: number },
  set: string[] = [],
): Promise<Experiment> {
  const { getPreset } = await import("../../configs/index.js");
  const name = `toy/${spec.data}_${spec.sde ?? "ve"}_${TOY_METHODS[spec.method].preset}`;
  const preset = getPreset(name);
  if (!preset) throw new Error(`no toy preset ${name}; \`fpd config list toy/\` shows them`);
  const every = Math.max(1, Math.floor(spec.steps / 4));
  return applyOverrides(preset.experiment, [
    `training.nIters=${spec.steps}`,
    `training.batchSize=${spec.batchSize}`,
    `training.snapshotFreq=${spec.steps}`,
    `training.snapshotFreqForPreemption=${every}`,
    `training.logFreq=${Math.max(1, Math.min(100, Math.floor(spec.steps / 50)))}`,
    ...set,
  ]);
}

export interface ToyScore {
  handle: string;
  run: RunDir;
  train: OpResult<"train.run">;
  nll: OpResult<"toy.nll">;
  /** Wall-clock seconds of the training updates (or of the call, when it resumed a finished run). */
  trainSeconds: number;
}

/** Train (or resume) a toy experiment in `runDir`, then measure its ScoreODE NLL on fresh points. */
export async function trainToy(
  session: Session,
  experiment: Experiment,
  opts: {
    runDir: string;
    handle?: string;
    nllPoints: number;
    signal?: AbortSignal;
    onEvent?: (e: TrainEvent) => void;
    /** Called when the NLL measurement starts, then with its progress. */
    onNllStart?: () => void;
    onNll?: (e: { done: number; total: number; nfe: number }) => void;
  },
): Promise<ToyScore> {
  const started = Date.now();
  const { run, handle, result } = await session.train(experiment, {
    runDir: opts.runDir,
    // the job measures the NLL and draws samples itself, after training; training time stays training
    evaluate: false,
    ...(opts.handle ? { handle: opts.handle } : {}),
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const trainSeconds = result.steps > 0 ? result.seconds : (Date.now() - started) / 1000;
  opts.onNllStart?.();
  const nll = await session.request("toy.nll", { model: handle, n: opts.nllPoints, seed: 1 }, {
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onNll ? { onEvent: opts.onNll } : {}),
  });
  return { handle, run, train: result, nll, trainSeconds };
}

const f = (t: Tensor) => Array.from(t.data as Float32Array);

export async function runToyJob(session: Session, opts: ToyJobOptions): Promise<ToyJobResult> {
  const t0 = Date.now();
  const outDir = resolve(opts.outDir);
  const results: ToyMethodResult[] = [];
  const densities: { method: ToyMethod; density: OpResult<"toy.density"> }[] = [];
  const samples: { method: ToyMethod; x: Tensor }[] = [];
  const runs: RunDir[] = [];
  const signal = opts.signal ? { signal: opts.signal } : {};
  const phase = (method: ToyMethod, p: ToyPhase) => opts.onEvent?.(method, { type: "phase", phase: p });
  const evalOpts = (method: ToyMethod, p: ToyPhase) => ({
    ...signal,
    onEvent: (e: { done: number; total: number; nfe: number }) => opts.onEvent?.(method, { type: "evalProgress", phase: p, done: e.done, total: e.total, nfe: e.nfe }),
  });

  for (const method of opts.methods) {
    const experiment = await toyExperiment({ ...opts, method }, opts.set);
    phase(method, "train");
    const nllProgress = evalOpts(method, "nll").onEvent;
    const scored = await trainToy(session, experiment, {
      runDir: join(outDir, method),
      handle: `toy-${method}`,
      nllPoints: opts.nllPoints,
      onEvent: (e) => opts.onEvent?.(method, e),
      onNllStart: () => phase(method, "nll"),
      onNll: nllProgress,
      ...signal,
    });
    const { run, handle, nll } = scored;
    runs.push(run);
    phase(method, "density");
    const density = await session.request("toy.density", { model: handle, n: opts.gridPoints }, evalOpts(method, "density"));
    densities.push({ method, density });
    phase(method, "samples");
    const drawn = await session.request("toy.samples", { model: handle, n: opts.samples, seed: 2 }, evalOpts(method, "samples"));
    samples.push({ method, x: drawn.x });
    const lastLoss = run.readMetrics().at(-1)?.loss;
    results.push({
      method,
      label: TOY_METHODS[method].label,
      experiment: experiment.name,
      steps: scored.train.step,
      trainSeconds: scored.trainSeconds,
      lastLoss: typeof lastLoss === "number" ? lastLoss : null,
      nll: nll.nll,
      nllStderr: nll.stderr,
      floor: nll.floor,
      gap: nll.gap,
      nfe: nll.nfe,
      solver: nll.solver,
      runDir: run.path,
    });
  }

  const figures = await drawFigures(session, opts, outDir, densities, samples);
  const floor = results[0]?.floor ?? null;
  const report = writeReport(opts, outDir, results, figures, floor, (Date.now() - t0) / 1000);
  return { data: opts.data, floor, methods: results, report, figures, seconds: (Date.now() - t0) / 1000 };
}

async function drawFigures(
  session: Session,
  opts: ToyJobOptions,
  outDir: string,
  densities: { method: ToyMethod; density: OpResult<"toy.density"> }[],
  samples: { method: ToyMethod; x: Tensor }[],
): Promise<string[]> {
  if (!densities.length) return [];
  const first = densities[0]!.density;
  const figures: string[] = [];
  if (first.axes.length === 2) {
    const panels: Panel[] = [];
    if (first.trueLogp) panels.push({ kind: "density", title: "data (true density)", axes: first.axes, logp: first.trueLogp });
    for (const { method, density } of densities) {
      panels.push({ kind: "density", title: `${TOY_METHODS[method].label}: ODE density`, axes: density.axes, logp: density.logp });
    }
    const p = await session.request("plot.toy", { path: join(outDir, "density.png"), title: `${opts.data}: model densities by the probability-flow ODE`, panels, columns: panels.length });
    figures.push(p.path);
    const data = await session.request("toy.data", { dataset: opts.data, n: opts.samples, seed: 3 });
    const lo = f(first.axes[0]!)[0]!;
    const hi = f(first.axes[0]!).at(-1)!;
    const scatter: Panel[] = [
      { kind: "samples", title: "data", x: data.x, xlim: [lo, hi], ylim: [lo, hi] },
      ...samples.map(({ method, x }) => ({ kind: "samples" as const, title: `${TOY_METHODS[method].label}: samples`, x, xlim: [lo, hi] as [number, number], ylim: [lo, hi] as [number, number] })),
    ];
    const s = await session.request("plot.toy", { path: join(outDir, "samples.png"), title: `${opts.data}: ODE samples`, panels: scatter, columns: scatter.length });
    figures.push(s.path);
  } else {
    const curves = [
      ...(first.trueLogp ? [{ label: "data (true density)", logp: first.trueLogp }] : []),
      ...densities.map(({ method, density }) => ({ label: TOY_METHODS[method].label, logp: density.logp })),
    ];
    const p = await session.request("plot.toy", {
      path: join(outDir, "density.png"),
      title: `${opts.data}: model densities by the probability-flow ODE`,
      panels: [{ kind: "curves", x: first.axes[0]!, curves }],
    });
    figures.push(p.path);
    const panels: Panel[] = samples.map(({ method, x }) => ({ kind: "curves", title: `${TOY_METHODS[method].label}: samples`, x: first.axes[0]!, curves: first.trueLogp ? [{ label: "data", logp: first.trueLogp }] : [], samples: x }));
    const s = await session.request("plot.toy", { path: join(outDir, "samples.png"), title: `${opts.data}: ODE samples against the data density`, panels, columns: panels.length });
    figures.push(s.path);
  }
  return figures;
}

function writeReport(opts: ToyJobOptions, outDir: string, results: ToyMethodResult[], figures: string[], floor: number | null, seconds: number): string {
  const rows: Row[] = results.map((r) => ({
    method: r.label,
    "NLL (nats)": r.nll,
    "± s.e.": r.nllStderr,
    "gap to floor": r.gap,
    "final loss": r.lastLoss,
    steps: r.steps,
    "train time (s)": r.trainSeconds,
    "ODE NFE": r.nfe,
    ...(results.some((x) => x.solver !== "dopri5") ? { "ODE solver": r.solver } : {}),
  }));
  const best = [...results].sort((a, b) => a.nll - b.nll)[0];
  const lines = [
    `# fpdiff toy report: ${opts.data} (${(opts.sde ?? "ve").toUpperCase()} SDE)`,
    "",
    `Each method trained the same MLP for ${opts.steps} updates at batch ${opts.batchSize} (Adam 1e-3, clip 1, EMA 0.999), ` +
      `then its ScoreODE's negative log-likelihood was measured by the probability-flow ODE with the exact divergence ` +
      `(dopri5, rtol = atol = 1e-5) on ${opts.nllPoints} fresh test points.` +
      (floor !== null ? ` The floor is the data's entropy, ${floor.toFixed(4)} nats: no model can score below it in expectation.` : ""),
    "",
    toMarkdown(rows, { digits: 4 }),
    "",
    best ? `Lowest NLL in this run: **${best.label}** (${best.nll.toFixed(4)} ± ${best.nllStderr.toFixed(4)} nats).` : "",
    "",
    ...figures.map((p) => `![${relative(outDir, p)}](${relative(outDir, p)})`),
    "",
    `Runs (checkpoints in the original Score SDE layout, metrics.jsonl, config.json): ${results.map((r) => `\`${relative(outDir, r.runDir)}/\``).join(", ")}.`,
    "",
    `Whole job: ${seconds.toFixed(0)} s. Generated by \`fpd toy\` on ${new Date().toISOString()}.`,
    "",
  ];
  const path = join(outDir, "report.md");
  atomicWrite(path, lines.join("\n"));
  return path;
}

export function hasToyReport(outDir: string): boolean {
  return existsSync(join(resolve(outDir), "report.md"));
}

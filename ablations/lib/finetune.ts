/**
 * The fine-tune protocol on the toys, for ablation scripts: train a first-order DSM base once per
 * (data, seed), continue copies of it for the same further updates with each loss — the control
 * being DSM alone — and compare the copies on the same test points with the same ODE settings.
 * Everything here goes through the API (Session, toyExperiment) and the worker's ops.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { toyExperiment, type Session, type ToyMethod } from "../../src/api/index.js";
import { atomicWrite } from "../../src/api/runs.js";
import type { Experiment } from "../../src/dsl/index.js";
import type { Tensor } from "../../src/protocol/tensor.js";

export type ToyData = "checkerboard" | "mog1d";

/** Budget and network of a study (one set for every method, so only the loss differs). */
export interface Protocol {
  /** Updates of the DSM base. */
  baseSteps: number;
  /** Further updates of every copy. */
  steps: number;
  batch: number;
  /** MLP width of the encoders' outputs and the hidden sizes: "64" and "256,256". */
  width: number;
  hidden: string;
  /** EMA rate while fine-tuning (the copies are evaluated with their EMA weights). */
  emaRate: number;
}

export function netOverrides(p: Protocol): string[] {
  const w = p.width;
  return [`model.width=${w}`, `model.timeHidden=[${w},${w}]`, `model.xHidden=[${w},${w}]`, `model.hidden=[${p.hidden}]`];
}

/** The run directory of the base of (data, seed) under `root`, and its last snapshot. */
export function baseDir(root: string, data: ToyData, seed: number): string {
  return join(root, "bases", `${data}-seed${seed}`);
}

/** Trains (or finds) the DSM base of (data, seed); returns its final snapshot. */
export async function ensureBase(session: Session, root: string, data: ToyData, seed: number, p: Protocol, signal?: AbortSignal): Promise<string> {
  const dir = baseDir(root, data, seed);
  const checkpoint = join(dir, "checkpoints", "checkpoint_1.pth");
  if (existsSync(checkpoint) && existsSync(join(dir, "run.json")) && JSON.parse(readFileSync(join(dir, "run.json"), "utf8")).status === "completed") {
    return checkpoint;
  }
  const exp = await toyExperiment({ data, method: "dsm", steps: p.baseSteps, batchSize: p.batch }, [...netOverrides(p), `training.seed=${seed}`]);
  await session.train(exp, { runDir: dir, handle: `base-${data}-${seed}`, ...(signal ? { signal } : {}) });
  return checkpoint;
}

/**
 * The experiment of a copy: the toy preset of `method` continued to baseSteps + steps, with the
 * base's network, the fine-tune EMA rate and `set` (e.g. the score-FPE term's fields).
 */
export async function copyExperiment(data: ToyData, seed: number, method: ToyMethod, p: Protocol, set: string[] = []): Promise<Experiment> {
  return toyExperiment({ data, method, steps: p.baseSteps + p.steps, batchSize: p.batch }, [
    ...netOverrides(p),
    `training.seed=${seed}`,
    `model.emaRate=${p.emaRate}`,
    ...set,
  ]);
}

/** Fine-tunes a copy of the base in `dir` (resumes a half-done one); returns its handle and calibration events. */
export async function finetuneCopy(
  session: Session,
  base: string,
  experiment: Experiment,
  dir: string,
  handle: string,
  signal?: AbortSignal,
): Promise<{ handle: string; seconds: number; calibration: { alpha: number; beta: number }[] }> {
  const calibration: { alpha: number; beta: number }[] = [];
  const out = await session.finetune(base, experiment, {
    runDir: dir,
    handle,
    onEvent: (e) => {
      if (e.type === "calibration") calibration.push({ alpha: e.alpha, beta: e.beta });
    },
    ...(signal ? { signal } : {}),
  });
  return { handle: out.handle, seconds: out.result.seconds, calibration };
}

/** Seeded test points of a toy (independent of every training stream). */
export async function testPoints(session: Session, data: ToyData, n: number, seed: number): Promise<Tensor> {
  return (await session.request("toy.data", { dataset: data, n, seed })).x;
}

/** The same ODE for every model: dopri5, exact divergence, rtol = atol = 1e-5, from t = 1e-5. */
export const ODE = { method: "dopri5" as const, rtol: 1e-5, atol: 1e-5, eps: 1e-5, divergence: "exact" as const };

/** Per-point NLL (nats) of `x` under a loaded model's ScoreODE. */
export async function perPointNll(session: Session, handle: string, x: Tensor, signal?: AbortSignal): Promise<{ nll: number[]; nfe: number; solver: string }> {
  const r = await session.request("likelihood.nll", { model: handle, x, ...ODE, repeats: 1, batchSize: 1000, weights: "ema" }, signal ? { signal } : {});
  return { nll: Array.from(r.perSample.data as Float32Array, Number), nfe: r.nfe, solver: r.solver };
}

export function mean(v: number[]): number {
  return v.reduce((a, b) => a + b, 0) / v.length;
}

/** Mean and standard error of a sample. */
export function meanSe(v: number[]): { mean: number; se: number } {
  const m = mean(v);
  if (v.length < 2) return { mean: m, se: NaN };
  const var_ = v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1);
  return { mean: m, se: Math.sqrt(var_ / v.length) };
}

/** Paired difference a − b over the same points: mean and its standard error. */
export function paired(a: number[], b: number[]): { mean: number; se: number } {
  if (a.length !== b.length) throw new Error(`paired: ${a.length} vs ${b.length} points`);
  return meanSe(a.map((v, i) => v - b[i]!));
}

/** A JSON cache in the ablation's directory: compute once, reuse on resume. */
export async function cached<T>(path: string, make: () => Promise<T>): Promise<T> {
  if (existsSync(path)) return JSON.parse(readFileSync(path, "utf8")) as T;
  const value = await make();
  mkdirSync(join(path, ".."), { recursive: true });
  atomicWrite(path, JSON.stringify(value));
  return value;
}

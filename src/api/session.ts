/**
 * A Session owns one worker and speaks in experiments, runs and checkpoints rather than ops.
 * Commands and ablation scripts use it; only it talks to the bridge.
 */
import { resolve } from "node:path";
import { Worker, type RequestOptions, type WorkerOptions } from "../bridge/worker.js";
import type { Experiment } from "../dsl/index.js";
import { RequestError } from "../protocol/errors.js";
import type { HelloResult } from "../protocol/ops/core.js";
import type { OpArgs, OpEvent, OpName, OpResult } from "../protocol/ops/index.js";
import type { Tensor } from "../protocol/tensor.js";
import { openPython } from "./python.js";
import { RunDir, RunLockedError } from "./runs.js";

export interface SessionOptions {
  /** Python interpreter for the worker (default: FPD_PYTHON, the project's .venv, python3). */
  python?: string;
  /** Where models run: "auto" (CUDA when the worker sees a GPU), "cpu", "cuda" or "cuda:N". */
  device?: string;
  /** Extra environment for the worker (e.g. CUDA_VISIBLE_DEVICES, FPD_THREADS). */
  env?: NodeJS.ProcessEnv;
  /** The worker's log lines (its stderr). */
  onLog?: (line: string) => void;
  /** Passed to the bridge (liveness, limits). */
  worker?: Omit<WorkerOptions, "python" | "env" | "onStderr">;
}

export type TrainEvent = OpEvent<"train.run">;
export type TrainResult = OpResult<"train.run">;

export interface TrainOptions {
  /** The run directory (default `runs/<experiment name>`, with `/` as `_`). */
  runDir?: string;
  /**
   * Continue from the run directory's checkpoints (the meta file, else the newest intact
   * snapshot). Default: yes when there are any (as the original training script does); `false`
   * refuses to touch a directory that has some.
   */
  resume?: boolean;
  /** Fine-tune: start from this original-format checkpoint (model, EMA, optimiser, step). */
  init?: string;
  /** Stop after this many updates in this call (the run can be resumed later). */
  maxSteps?: number;
  /**
   * Continue a run whose config.json holds a different experiment (another lr, loss, data…).
   * Default: refused with CONFIG_CHANGED; when allowed, both are recorded in run.json's history.
   */
  allowConfigChange?: boolean;
  /** Handle the trained model is kept under in the worker (default: the run directory's name). */
  handle?: string;
  signal?: AbortSignal;
  onEvent?: (event: TrainEvent) => void;
}

export interface TrainOutcome {
  run: RunDir;
  handle: string;
  result: TrainResult;
}

type EvalKinds = {
  bpd: "likelihood.nll";
  loss: "loss.eval";
  fpeResidual: "diagnostics.fpe_residual";
  fisher: "diagnostics.fisher";
};
export type EvalKind = keyof EvalKinds;
export type EvalSpec<K extends EvalKind> = { kind: K } & Omit<OpArgs<EvalKinds[K]>, "model">;
export type EvalResult<K extends EvalKind> = OpResult<EvalKinds[K]>;

const EVAL_OPS: EvalKinds = { bpd: "likelihood.nll", loss: "loss.eval", fpeResidual: "diagnostics.fpe_residual", fisher: "diagnostics.fisher" };

export function defaultRunDir(experiment: Experiment, root = "runs"): string {
  return resolve(root, experiment.name.replace(/[^A-Za-z0-9._-]+/g, "_"));
}

export class Session {
  readonly worker: Worker;
  readonly device: string;

  private constructor(worker: Worker, device: string) {
    this.worker = worker;
    this.device = device;
  }

  static async open(opts: SessionOptions = {}): Promise<Session> {
    const worker = await Worker.start({
      ...opts.worker,
      ...(opts.python ? { python: opts.python } : {}),
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.onLog ? { onStderr: opts.onLog } : {}),
    });
    return new Session(worker, opts.device ?? "auto");
  }

  /** Versions and devices the worker reported. */
  get info(): HelloResult {
    return this.worker.info;
  }

  /** Any op, typed from its schema — for what the methods below do not cover. */
  request<K extends OpName>(op: K, args: OpArgs<K>, opts?: RequestOptions<OpEvent<K>>): Promise<OpResult<K>> {
    return this.worker.request(op, args, opts);
  }

  /**
   * Train an experiment in a run directory: checkpoints in the original layout (written by the
   * worker), config.json, metrics.jsonl and run.json (written here from the worker's events).
   * Ctrl-C / abort writes a meta checkpoint first; a NaN loss stops with DIVERGED and keeps the
   * last good checkpoint. Both leave the run resumable.
   */
  async train(experiment: Experiment, opts: TrainOptions = {}): Promise<TrainOutcome> {
    const dir = opts.runDir ? resolve(opts.runDir) : defaultRunDir(experiment);
    // one training process per run directory: the lock lives as long as this call (or our worker)
    const lock = await this.worker.request("run.lock", { dir, owner: { pid: process.pid, command: process.argv.slice(1).join(" ") } });
    if (!lock.locked) throw new RunLockedError(dir, lock.holder);
    try {
      return await this.trainLocked(dir, experiment, opts);
    } finally {
      await this.worker.request("run.unlock", { dir }).catch(() => {});
    }
  }

  private async trainLocked(dir: string, experiment: Experiment, opts: TrainOptions): Promise<TrainOutcome> {
    const run = RunDir.open(dir, experiment, { allowConfigChange: opts.allowConfigChange ?? false, fresh: opts.resume === false });
    const handle = opts.handle ?? dir.split("/").pop()!;
    run.status("running");
    const onEvent = (e: TrainEvent) => {
      // the worker restored the run and trains: only now may a changed experiment replace config.json
      if (e.type !== "warning") run.commitConfig();
      if (e.type === "metrics") run.metrics({ step: e.step, loss: e.loss, terms: e.terms, gradNorm: e.gradNorm, lr: e.lr });
      else if (e.type === "checkpoint") run.checkpoint({ kind: e.kind, path: e.path, step: e.step, sha256: e.sha256, bytes: e.bytes });
      opts.onEvent?.(e);
    };
    try {
      const result = await this.worker.request(
        "train.run",
        {
          experiment,
          workdir: dir,
          handle,
          // the worker warns when asked to resume from nothing; only ask when there is something
          resume: opts.resume !== false && run.hasCheckpoints,
          device: this.device,
          ...(opts.init ? { init: { checkpoint: resolve(opts.init) } } : {}),
          ...(opts.maxSteps !== undefined ? { maxSteps: opts.maxSteps } : {}),
        },
        { onEvent, ...(opts.signal ? { signal: opts.signal } : {}) },
      );
      run.commitConfig();
      // the last step's metrics, unless the logFreq schedule already recorded them
      if (result.lastMetrics && result.lastMetrics.step > run.lastLoggedStep) run.metrics({ ...result.lastMetrics });
      run.status(result.status);
      return { run, handle: result.handle, result };
    } catch (err) {
      const code = (err as { code?: string }).code;
      run.status(code === "CANCELLED" ? "cancelled" : code === "DIVERGED" ? "diverged" : "failed", (err as Error).message);
      throw err;
    }
  }

  /** Fine-tune from an original Score SDE checkpoint (model, EMA, Adam state and step), as both papers did. */
  finetune(checkpoint: string, experiment: Experiment, opts: Omit<TrainOptions, "init"> = {}): Promise<TrainOutcome> {
    return this.train(experiment, { ...opts, init: checkpoint });
  }

  /** Build an experiment's network in the worker, fresh or from a checkpoint, and keep it by handle. */
  load(experiment: Experiment, opts: { checkpoint?: string; handle?: string } = {}): Promise<OpResult<"model.load">> {
    return this.worker.request("model.load", {
      experiment,
      device: this.device,
      ...(opts.checkpoint ? { checkpoint: resolve(opts.checkpoint) } : {}),
      ...(opts.handle ? { handle: opts.handle } : {}),
    });
  }

  /**
   * Evaluate a loaded model: `bpd` (NLL and bits/dim by the probability-flow ODE), `loss` (each
   * loss term), `fpeResidual` (the score-FPE residual along t), `fisher` (toys: the ScoreODE's
   * Fisher divergence along t).
   */
  evaluate<K extends EvalKind>(
    model: string,
    spec: EvalSpec<K>,
    opts: RequestOptions<OpEvent<EvalKinds[K]>> = {},
  ): Promise<EvalResult<K>> {
    const { kind, ...args } = spec;
    const op = EVAL_OPS[kind];
    if (!op) return Promise.reject(new RequestError("BAD_REQUEST", `unknown evaluation ${String(kind)}; one of ${Object.keys(EVAL_OPS).join(", ")}`, { op: "evaluate", field: "kind" }));
    return this.worker.request(op, { ...args, model } as never, opts as never) as Promise<EvalResult<K>>;
  }

  /** Samples of a loaded model (PC or probability-flow ODE, by default the experiment's sampler). */
  sample(model: string, args: Omit<OpArgs<"sample">, "model">, opts: RequestOptions<OpEvent<"sample">> = {}): Promise<OpResult<"sample">> {
    return this.worker.request("sample", { ...args, model }, opts);
  }

  /** The score (and the raw network output) of a loaded model at (x, t). */
  score(model: string, x: Tensor, t: Tensor | number, opts: { weights?: "ema" | "model" } = {}): Promise<OpResult<"model.score">> {
    return this.worker.request("model.score", { model, x, t, ...(opts.weights ? { weights: opts.weights } : {}) });
  }

  /**
   * pythonia on the same interpreter, for ad-hoc Python in scripts (plots, a scipy call). The
   * numerics and tensors go through the worker, never through this.
   */
  python(): ReturnType<typeof openPython> {
    return openPython(this.worker.python);
  }

  async close(): Promise<void> {
    await this.worker.close();
  }
}

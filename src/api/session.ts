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
  /**
   * Run the worker as a job of several processes (PyTorch's elastic launcher, DDP for training,
   * plain sharding for evaluation). Rank 0 serves this session; see `runNode` for nodes ≥ 1.
   */
  launch?: LaunchOptions;
}

/** A job: `nproc` processes per machine on `nnodes` machines; node 0 at `rdzv` (HOST:PORT). */
export interface LaunchOptions {
  nproc: number;
  nnodes?: number;
  nodeRank?: number;
  rdzv?: string;
}

/** The worker's command-line arguments for a job (it re-executes itself under fpdiff.launch). */
export function launchArgs(l: LaunchOptions | undefined): string[] {
  if (!l) return [];
  const nnodes = l.nnodes ?? 1;
  if (!Number.isInteger(l.nproc) || l.nproc < 1) throw new RangeError(`launch.nproc must be a positive integer, got ${l.nproc}`);
  if (!Number.isInteger(nnodes) || nnodes < 1) throw new RangeError(`launch.nnodes must be a positive integer, got ${nnodes}`);
  if (nnodes > 1 && !l.rdzv) throw new RangeError("launch.rdzv (HOST:PORT of node 0) is required with nnodes > 1");
  if (l.nproc === 1 && nnodes === 1) return [];
  return ["--nproc", String(l.nproc), "--nnodes", String(nnodes), "--node-rank", String(l.nodeRank ?? 0), ...(l.rdzv ? ["--rdzv", l.rdzv] : [])];
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
  /** Held-out losses, snapshot samples / bits/dim and TensorBoard on the experiment's schedule (default true). */
  evaluate?: boolean;
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
    if ((opts.launch?.nodeRank ?? 0) > 0) {
      throw new RangeError("a session is served by node 0; on other nodes call runNode() with the same launch options");
    }
    const job = launchArgs(opts.launch);
    const worker = await Worker.start({
      ...(job.length ? { startTimeoutMs: 180_000 } : {}),
      ...opts.worker,
      ...(job.length ? { args: [...job, ...(opts.worker?.args ?? [])] } : {}),
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
      else if (e.type === "eval") {
        run.evaluation({ step: e.step, kind: "eval", "eval/loss": e.loss, ...Object.fromEntries(Object.entries(e.terms).map(([k, v]) => [`eval/${k}`, v])) });
      } else if (e.type === "samples") run.evaluation({ step: e.step, kind: "samples", path: e.path, png: e.png, n: e.n, nfe: e.nfe, seconds: e.seconds });
      else if (e.type === "bpd") run.evaluation({ step: e.step, kind: "bpd", [`snapshot/${e.metric}`]: e.value, stderr: e.stderr, n: e.n, nfe: e.nfe });
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
          ...(opts.evaluate === false ? { evaluate: false } : {}),
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

  /**
   * Bits/dim over a whole split (`eval.bpd_dataset`): resumable from `out`, sharded over the job's
   * ranks; events carry images done, the running mean ± s.e. and NFE.
   */
  bpdDataset(model: string, args: Omit<OpArgs<"eval.bpd_dataset">, "model">, opts: RequestOptions<OpEvent<"eval.bpd_dataset">> = {}): Promise<OpResult<"eval.bpd_dataset">> {
    return this.worker.request("eval.bpd_dataset", { ...args, model, out: resolve(args.out) }, opts);
  }

  /** n samples in .npz shards plus a PNG grid (`sample.shards`), reproducible per seed, resumable. */
  sampleShards(model: string, args: Omit<OpArgs<"sample.shards">, "model">, opts: RequestOptions<OpEvent<"sample.shards">> = {}): Promise<OpResult<"sample.shards">> {
    return this.worker.request("sample.shards", { ...args, model, out: resolve(args.out) }, opts);
  }

  /** FID / Inception score / KID of n samples against reference statistics (`eval.fid`). */
  fid(model: string, args: Omit<OpArgs<"eval.fid">, "model">, opts: RequestOptions<OpEvent<"eval.fid">> = {}): Promise<OpResult<"eval.fid">> {
    return this.worker.request("eval.fid", { ...args, model, out: resolve(args.out), stats: resolve(args.stats), ...(args.inception ? { inception: resolve(args.inception) } : {}) }, opts);
  }

  /** Reference statistics of a data set split for FID / KID (`eval.fid_stats`). */
  fidStats(args: OpArgs<"eval.fid_stats">, opts: RequestOptions<OpEvent<"eval.fid_stats">> = {}): Promise<OpResult<"eval.fid_stats">> {
    return this.worker.request("eval.fid_stats", { device: this.device, ...args, out: resolve(args.out), ...(args.inception ? { inception: resolve(args.inception) } : {}) }, opts);
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

/**
 * Serve as node `nodeRank` ≥ 1 of a multi-node job: start this machine's ranks and wait until the
 * job ends (node 0's session drives it). Resolves with the launcher's exit code; `onLog` gets its
 * stderr (every rank's logs), `signal` stops the local ranks.
 */
export async function runNode(launch: LaunchOptions, opts: { python?: string; env?: NodeJS.ProcessEnv; onLog?: (line: string) => void; signal?: AbortSignal } = {}): Promise<number> {
  const { spawn } = await import("node:child_process");
  const { resolvePython, workerEnv } = await import("../bridge/python.js");
  const { PROJECT_ROOT } = await import("../paths.js");
  if ((launch.nodeRank ?? 0) < 1) throw new RangeError("runNode is for nodes 1…nnodes−1; node 0 opens a Session");
  const { python } = resolvePython(opts.python);
  const child = spawn(python, ["-m", "fpdiff.worker", ...launchArgs(launch)], {
    cwd: PROJECT_ROOT,
    env: workerEnv(opts.env),
    stdio: ["pipe", "ignore", "pipe"],
  });
  child.stderr!.setEncoding("utf8");
  let buf = "";
  child.stderr!.on("data", (chunk: string) => {
    buf += chunk;
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const line of lines) opts.onLog?.(line);
  });
  opts.signal?.addEventListener("abort", () => child.kill("SIGTERM"), { once: true });
  return new Promise((res, rej) => {
    child.once("error", rej);
    child.once("exit", (code, sig) => res(code ?? (sig ? 128 : 1)));
  });
}

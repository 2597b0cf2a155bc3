/**
 * A Session owns one worker and speaks in experiments, runs and checkpoints rather than ops.
 * Commands and ablation scripts use it; only it talks to the bridge.
 */
import { Worker, type WorkerOptions } from "../bridge/worker.js";
import type { HelloResult } from "../protocol/ops/core.js";
import { openPython } from "./python.js";

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

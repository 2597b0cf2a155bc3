/**
 * The TypeScript end of the wire: a Worker is a supervised `python -m fpdiff.worker` process
 * (process.ts) plus the request client that talks to it (client.ts).
 *
 * Failure is reported, never swallowed: a worker that exits rejects every pending request with
 * WorkerCrashedError at once (its exit is observed directly); one that stops answering is found
 * by the client's heartbeat, killed, and reported the same way.
 */
import { WorkerClosedError, WorkerCrashedError, WorkerStartError } from "../protocol/errors.js";
import type { OpArgs, OpEvent, OpName, OpResult } from "../protocol/ops/index.js";
import type { HelloResult } from "../protocol/ops/core.js";
import { PROTOCOL_VERSION } from "../protocol/version.js";
import { DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUED, RequestClient, type RequestOptions } from "./client.js";
import { WorkerProcess } from "./process.js";

export type { RequestOptions } from "./client.js";

export interface WorkerOptions {
  /** Python interpreter; default FPD_PYTHON, then the project's .venv, then python3. */
  python?: string;
  /** Extra environment for the worker (e.g. CUDA_VISIBLE_DEVICES). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How long to wait for the ready line (importing torch can take a while on a cold disk). */
  startTimeoutMs?: number;
  /** Largest message sent or accepted, in bytes (the worker gets the same limit). */
  maxMessageBytes?: number;
  /** A worker silent this long while requests are pending is declared hung and killed. */
  livenessTimeoutMs?: number;
  /** Requests on the wire at once; more wait in the bridge, in order (default 1024). */
  maxInFlight?: number;
  /** Requests allowed to wait for a slot; past that a request is refused with BUSY. */
  maxQueued?: number;
  /** Extra command-line arguments for the worker. */
  args?: string[];
  /** Receives the worker's stderr line by line (its logs); default: kept for error reports only. */
  onStderr?: (line: string) => void;
}

const DEFAULT_MAX_MESSAGE = 1 << 30;

export class Worker {
  readonly pid: number;
  readonly endpoint: string;
  readonly python: string;
  /** What the worker said about itself at start-up (versions, devices, ops). */
  info!: HelloResult;

  private readonly proc: WorkerProcess;
  private readonly client: RequestClient;
  private closing = false;

  private constructor(proc: WorkerProcess, opts: WorkerOptions) {
    this.proc = proc;
    this.pid = proc.pid;
    this.endpoint = proc.ready.endpoint;
    this.python = proc.python;
    this.client = new RequestClient({
      endpoint: proc.ready.endpoint,
      auth: proc.ready.auth,
      maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE,
      // the hello handshake is bounded by the start timeout (a loaded machine may take a while)
      livenessTimeoutMs: Math.max(opts.startTimeoutMs ?? 60_000, opts.livenessTimeoutMs ?? 10_000),
      maxInFlight: opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      maxQueued: opts.maxQueued ?? DEFAULT_MAX_QUEUED,
      onHung: (silent) => {
        this.client.fail(
          new WorkerCrashedError(`the worker stopped answering (silent for ${silent} ms); it was killed`, {
            exitCode: null,
            signal: null,
            stderrTail: this.proc.stderrTail,
          }),
        );
        this.proc.kill("SIGKILL");
      },
    });
    void proc.exited.then(({ code, signal }) =>
      this.client.fail(
        new WorkerCrashedError(
          this.closing ? "the worker exited while closing" : `the worker exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})`,
          { exitCode: code, signal, stderrTail: this.proc.stderrTail },
        ),
      ),
    );
  }

  /** Start a worker and complete the `hello` handshake (protocol versions must agree). */
  static async start(opts: WorkerOptions = {}): Promise<Worker> {
    const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
    const proc = await WorkerProcess.spawn({
      python: opts.python,
      env: opts.env,
      cwd: opts.cwd,
      args: ["--max-message-bytes", String(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE), ...(opts.args ?? [])],
      startTimeoutMs,
      onStderr: opts.onStderr,
    });
    const worker = new Worker(proc, opts);
    try {
      worker.info = await worker.request("hello", {}, { timeoutMs: startTimeoutMs });
    } catch (err) {
      await worker.close().catch(() => {});
      throw err;
    }
    worker.client.setLiveness(opts.livenessTimeoutMs ?? 10_000);
    if (worker.info.protocol !== PROTOCOL_VERSION) {
      await worker.close();
      throw new WorkerStartError(`the worker speaks protocol ${worker.info.protocol}, this client ${PROTOCOL_VERSION}`);
    }
    return worker;
  }

  /** True until the worker exits or is declared hung. */
  get alive(): boolean {
    return this.client.alive;
  }

  /** The PLAIN credentials a second client (tests, tools) must present to this worker. */
  get credentials(): { username: string; password: string } {
    return { ...this.proc.ready.auth };
  }

  /** The most requests that were on the wire at once. */
  get peakInFlight(): number {
    return this.client.peakInFlight;
  }

  /** Send a typed request; args are checked against the op's schema before anything is sent. */
  request<K extends OpName>(op: K, args: OpArgs<K>, opts: RequestOptions<OpEvent<K>> = {}): Promise<OpResult<K>> {
    return this.client.request(op, args, opts);
  }

  /** Send a request without TypeScript-side schemas (tests, generic tools). */
  requestRaw(op: string, args: unknown, opts: RequestOptions<unknown> = {}): Promise<unknown> {
    return this.client.requestRaw(op, args, opts);
  }

  /**
   * Ask the worker to stop (it cancels what runs, which lets a training op save its meta
   * checkpoint), then SIGTERM and finally SIGKILL if it does not exit within the grace period.
   */
  async close(opts: { graceMs?: number } = {}): Promise<void> {
    const grace = opts.graceMs ?? 10_000;
    this.closing = true;
    if (this.client.alive) {
      const shutdown = this.client.shutdown(Math.min(grace, 2000)).catch(() => {});
      await Promise.race([shutdown, this.proc.exited]);
    }
    await this.proc.stop(grace);
    this.client.fail(new WorkerClosedError());
  }

  /** Kill the worker now (tests of crash handling, last-resort clean-up). */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.proc.kill(signal);
  }

  /** Resolves when the worker process has exited. */
  get exit(): Promise<void> {
    return this.proc.exited.then(() => undefined);
  }
}

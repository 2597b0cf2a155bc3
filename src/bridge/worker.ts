/**
 * The TypeScript end of the wire: starts `python -m fpdiff.worker`, connects a DEALER socket to
 * its ROUTER and multiplexes typed requests over it by id.
 *
 * Failure is reported, never swallowed: a worker that exits rejects every pending request with
 * WorkerCrashedError at once (its exit is observed directly); one that stops answering is found
 * by heartbeat pings, killed, and reported the same way.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { Dealer } from "zeromq";
import { decode, encode, peekHeader } from "../protocol/codec.js";
import { ErrorData } from "../protocol/envelope.js";
import {
  BadReplyError,
  RequestError,
  RequestTimeoutError,
  WorkerClosedError,
  WorkerCrashedError,
  WorkerStartError,
} from "../protocol/errors.js";
import { opDef, type OpArgs, type OpEvent, type OpName, type OpResult } from "../protocol/ops/index.js";
import type { HelloResult } from "../protocol/ops/core.js";
import { PROTOCOL_VERSION } from "../protocol/version.js";
import { PROJECT_ROOT } from "../paths.js";
import { resolvePython, workerEnv } from "./python.js";

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
  /** Extra command-line arguments for the worker. */
  args?: string[];
  /** Receives the worker's stderr line by line (its logs); default: kept for error reports only. */
  onStderr?: (line: string) => void;
}

export interface RequestOptions<E> {
  onEvent?: (event: E) => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Pending {
  op: string;
  validate: boolean;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  onEvent: ((event: unknown) => void) | undefined;
  cleanup: () => void;
}

const STDERR_LINES = 40;
const DEFAULT_MAX_MESSAGE = 1 << 30;

export class Worker {
  readonly pid: number;
  readonly endpoint: string;
  readonly python: string;
  /** What the worker said about itself at start-up (versions, devices, ops). */
  info!: HelloResult;

  private readonly child: ChildProcess;
  private readonly sock: Dealer;
  private readonly pending = new Map<number, Pending>();
  private readonly stderrTail: string[];
  private readonly maxMessageBytes: number;
  private readonly livenessTimeoutMs: number;
  private nextId = 1;
  private sending = false;
  private readonly sendQueue: { payload: Buffer; resolve: () => void; reject: (err: Error) => void }[] = [];
  private lastHeard = Date.now();
  private heartbeat: NodeJS.Timeout | undefined;
  private pingInFlight = false;
  private dead: Error | undefined;
  private closing = false;
  private readonly exited: Promise<void>;

  private constructor(child: ChildProcess, endpoint: string, python: string, stderrTail: string[], opts: WorkerOptions) {
    this.child = child;
    this.pid = child.pid!;
    this.endpoint = endpoint;
    this.python = python;
    this.stderrTail = stderrTail;
    this.maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE;
    this.livenessTimeoutMs = opts.livenessTimeoutMs ?? 10_000;
    this.sock = new Dealer({ linger: 0 });
    this.sock.connect(endpoint);
    this.exited = new Promise((resolve) => {
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        this.die(
          new WorkerCrashedError(
            this.closing ? "the worker exited while closing" : `the worker exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})`,
            { exitCode: code, signal, stderrTail: this.stderrTail.join("\n") },
          ),
        );
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode);
      else child.once("exit", onExit);
    });
    void this.receiveLoop();
  }

  /** Start a worker and complete the `hello` handshake (protocol versions must agree). */
  static async start(opts: WorkerOptions = {}): Promise<Worker> {
    const { python } = resolvePython(opts.python);
    const args = ["-m", "fpdiff.worker", "--max-message-bytes", String(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE), ...(opts.args ?? [])];
    const child = spawn(python, args, {
      cwd: opts.cwd ?? PROJECT_ROOT,
      env: workerEnv(opts.env),
      stdio: ["pipe", "pipe", "pipe"],
      // Own process group: a terminal Ctrl-C reaches us, and we cancel the worker politely.
      detached: true,
    });
    const stderrTail: string[] = [];
    let stderrBuf = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      stderrBuf += chunk;
      const lines = stderrBuf.split("\n");
      stderrBuf = lines.pop()!;
      for (const line of lines) {
        stderrTail.push(line);
        if (stderrTail.length > STDERR_LINES) stderrTail.shift();
        opts.onStderr?.(line);
      }
    });
    child.stdin!.on("error", () => {}); // EPIPE when the worker is gone: reported through 'exit'

    const endpoint = await waitForReady(child, python, stderrTail, opts.startTimeoutMs ?? 60_000);
    child.stdout!.resume(); // nothing more is expected there; never let the pipe fill
    const worker = new Worker(child, endpoint, python, stderrTail, opts);
    child.unref();
    for (const s of [child.stdout, child.stderr]) (s as unknown as { unref?: () => void })?.unref?.();
    try {
      worker.info = await worker.request("hello", {}, { timeoutMs: opts.startTimeoutMs ?? 60_000 });
    } catch (err) {
      await worker.close().catch(() => {});
      throw err;
    }
    if (worker.info.protocol !== PROTOCOL_VERSION) {
      await worker.close();
      throw new WorkerStartError(`the worker speaks protocol ${worker.info.protocol}, this client ${PROTOCOL_VERSION}`);
    }
    return worker;
  }

  /** True until the worker exits or is declared hung. */
  get alive(): boolean {
    return this.dead === undefined;
  }

  /** Send a typed request; args are checked against the op's schema before anything is sent. */
  request<K extends OpName>(op: K, args: OpArgs<K>, opts: RequestOptions<OpEvent<K>> = {}): Promise<OpResult<K>> {
    const def = opDef(op);
    if (!def) return Promise.reject(new RequestError("UNKNOWN_OP", `no schema for op ${String(op)}`, { op }));
    const parsed = def.args.safeParse(args);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const field = ["args", ...issue.path.map(String)].join(".");
      return Promise.reject(new RequestError("BAD_REQUEST", `${field}: ${issue.message}`, { op, field }));
    }
    return this.send(op, parsed.data, opts as RequestOptions<unknown>, true) as Promise<OpResult<K>>;
  }

  /** Send a request without TypeScript-side schemas (tests, generic tools). */
  requestRaw(op: string, args: unknown, opts: RequestOptions<unknown> = {}): Promise<unknown> {
    return this.send(op, args, opts, false);
  }

  private send(op: string, args: unknown, opts: RequestOptions<unknown>, validate: boolean): Promise<unknown> {
    if (this.dead) return Promise.reject(this.dead);
    if (opts.signal?.aborted) return Promise.reject(new RequestError("CANCELLED", "aborted before it was sent", { op }));
    const id = this.nextId++;
    let payload: Buffer;
    try {
      payload = encode({ v: PROTOCOL_VERSION, id, op, args });
    } catch (err) {
      return Promise.reject(new RequestError("BAD_REQUEST", `args cannot be encoded: ${(err as Error).message}`, { op, field: "args" }));
    }
    if (payload.byteLength > this.maxMessageBytes) {
      return Promise.reject(
        new RequestError("TOO_LARGE", `request of ${payload.byteLength} bytes exceeds the limit of ${this.maxMessageBytes} bytes`, { op }),
      );
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.cancelRemote(id);
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        this.pending.delete(id);
      };
      this.pending.set(id, { op, validate, resolve, reject, onEvent: opts.onEvent, cleanup });
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.cancelRemote(id);
          cleanup();
          reject(new RequestTimeoutError(op, opts.timeoutMs!));
        }, opts.timeoutMs);
      }
      this.updateHeartbeat();
      this.write(payload).catch((err: Error) => {
        const p = this.pending.get(id);
        if (p) {
          p.cleanup();
          p.reject(this.dead ?? new WorkerClosedError(`could not send ${op}: ${err.message}`));
        }
      });
    });
  }

  private write(payload: Buffer): Promise<void> {
    // zeromq.js allows one send in flight per socket: send at once when idle, else queue.
    if (!this.sending) return this.sendNow(payload);
    return new Promise((resolve, reject) => this.sendQueue.push({ payload, resolve, reject }));
  }

  private async sendNow(payload: Buffer): Promise<void> {
    this.sending = true;
    try {
      await this.sock.send(payload);
    } finally {
      const next = this.sendQueue.shift();
      if (next) this.sendNow(next.payload).then(next.resolve, next.reject);
      else this.sending = false;
    }
  }

  private cancelRemote(target: number): void {
    if (this.dead || !this.pending.has(target)) return;
    const id = this.nextId++;
    this.write(encode({ v: PROTOCOL_VERSION, id, op: "cancel", args: { target } })).catch(() => {});
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.sock) {
        this.lastHeard = Date.now();
        const msg = frames[frames.length - 1]!;
        this.dispatch(msg);
      }
    } catch (err) {
      if (!this.dead) this.die(new WorkerClosedError(`the bridge socket failed: ${(err as Error).message}`));
    }
  }

  private dispatch(msg: Buffer): void {
    if (msg.byteLength > this.maxMessageBytes) {
      const head = peekHeader(msg);
      this.fail(head.id, (op) => new RequestError("TOO_LARGE", `reply of ${msg.byteLength} bytes exceeds the limit of ${this.maxMessageBytes} bytes`, { op }));
      return;
    }
    let doc: { v?: unknown; id?: unknown; kind?: unknown; data?: unknown };
    try {
      doc = decode(msg) as typeof doc;
    } catch (err) {
      const head = peekHeader(msg);
      this.fail(head.id, (op) => new BadReplyError(op, `undecodable message: ${(err as Error).message}`));
      return;
    }
    if (typeof doc !== "object" || doc === null) return;
    const p = typeof doc.id === "number" ? this.pending.get(doc.id) : undefined;
    if (!p) return; // a late reply to a request that timed out, or to an internal ping
    if (doc.v !== PROTOCOL_VERSION) {
      p.cleanup();
      p.reject(new BadReplyError(p.op, `reply speaks protocol ${String(doc.v)}, expected ${PROTOCOL_VERSION}`));
      return;
    }
    const def = p.validate ? opDef(p.op) : undefined;
    switch (doc.kind) {
      case "event": {
        if (!p.onEvent) return;
        if (def) {
          const ev = def.event.safeParse(doc.data);
          if (!ev.success) {
            p.cleanup();
            this.cancelRemote(doc.id as number);
            p.reject(new BadReplyError(p.op, `event: ${ev.error.issues[0]!.message} at ${ev.error.issues[0]!.path.join(".")}`));
            return;
          }
          p.onEvent(ev.data);
        } else p.onEvent(doc.data);
        return;
      }
      case "result": {
        p.cleanup();
        if (def) {
          const res = def.result.safeParse(doc.data);
          if (!res.success) {
            const issue = res.error.issues[0]!;
            p.reject(new BadReplyError(p.op, `result: ${issue.message} at ${issue.path.join(".") || "(root)"}`));
          } else p.resolve(res.data);
        } else p.resolve(doc.data);
        return;
      }
      case "error": {
        p.cleanup();
        const err = ErrorData.safeParse(doc.data);
        if (!err.success) p.reject(new BadReplyError(p.op, "malformed error reply"));
        else {
          const { traceback, ...details } = err.data.details ?? {};
          p.reject(
            new RequestError(err.data.code, err.data.message, {
              op: p.op,
              field: err.data.field,
              traceback,
              details: Object.keys(details).length ? details : undefined,
            }),
          );
        }
        return;
      }
      default:
        p.cleanup();
        p.reject(new BadReplyError(p.op, `unknown reply kind ${String(doc.kind)}`));
    }
  }

  private fail(id: unknown, make: (op: string) => Error): void {
    const p = typeof id === "number" ? this.pending.get(id) : undefined;
    if (!p) return;
    p.cleanup();
    p.reject(make(p.op));
  }

  /** Heartbeat only while something waits for an answer, so an idle worker costs nothing. */
  private updateHeartbeat(): void {
    // silence is measured from the first request of a busy period, not from the last idle reply
    if (this.pending.size === 1) this.lastHeard = Date.now();
    if (this.pending.size > 0 && !this.heartbeat && !this.dead) {
      const period = Math.max(50, Math.min(1000, this.livenessTimeoutMs / 4));
      this.heartbeat = setInterval(() => this.beat(), period);
      this.heartbeat.unref();
    }
  }

  private beat(): void {
    if (this.pending.size === 0) {
      // stopped lazily here rather than per request, so back-to-back requests reuse one timer
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
      return;
    }
    const silent = Date.now() - this.lastHeard;
    if (silent > this.livenessTimeoutMs) {
      this.die(
        new WorkerCrashedError(`the worker stopped answering (silent for ${silent} ms); it was killed`, {
          exitCode: null,
          signal: null,
          stderrTail: this.stderrTail.join("\n"),
        }),
      );
      this.child.kill("SIGKILL");
      return;
    }
    if (silent > this.livenessTimeoutMs / 4 && !this.pingInFlight) {
      this.pingInFlight = true;
      const id = this.nextId++;
      this.write(encode({ v: PROTOCOL_VERSION, id, op: "ping", args: {} }))
        .catch(() => {})
        .finally(() => (this.pingInFlight = false));
    }
  }

  private die(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const p of [...this.pending.values()]) {
      p.cleanup();
      p.reject(err);
    }
    this.sock.close();
  }

  /**
   * Ask the worker to stop (it cancels what runs, which lets a training op save its meta
   * checkpoint), then SIGTERM and finally SIGKILL if it does not exit within the grace period.
   */
  async close(opts: { graceMs?: number } = {}): Promise<void> {
    const grace = opts.graceMs ?? 10_000;
    this.closing = true;
    if (!this.dead) {
      const shutdown = this.requestRaw("shutdown", {}, { timeoutMs: Math.min(grace, 2000) }).catch(() => {});
      await Promise.race([shutdown, this.exited]);
    }
    const exited = await waitFor(this.exited, grace);
    if (!exited) {
      this.child.kill("SIGTERM");
      if (!(await waitFor(this.exited, 2000))) {
        this.child.kill("SIGKILL");
        await this.exited;
      }
    }
    this.die(new WorkerClosedError());
    this.child.stdin?.destroy();
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
  }

  /** Kill the worker now (tests of crash handling, last-resort clean-up). */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.child.kill(signal);
  }

  /** Resolves when the worker process has exited. */
  get exit(): Promise<void> {
    return this.exited;
  }
}

function waitFor(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function waitForReady(child: ChildProcess, python: string, stderrTail: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const done = (err?: Error, endpoint?: string) => {
      clearTimeout(timer);
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
      if (err) {
        child.kill("SIGKILL");
        reject(err);
      } else resolve(endpoint!);
    };
    const onData = (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      try {
        const ready = JSON.parse(line) as { ready?: boolean; endpoint?: string };
        if (ready.ready && typeof ready.endpoint === "string") return done(undefined, ready.endpoint);
      } catch {
        // fall through
      }
      done(new WorkerStartError(`${python} printed something other than the worker's ready line: ${line.slice(0, 200)}`, stderrTail.join("\n")));
    };
    // stderr may still be arriving when the process exits; give it a moment to land in the tail.
    const onExit = (code: number | null, signal: string | null) =>
      setTimeout(() => done(new WorkerStartError(`the worker (${python}) exited during start-up (${signal ?? `exit code ${code}`})`, stderrTail.join("\n"))), 50);
    const onError = (err: Error) => done(new WorkerStartError(`cannot run ${python}: ${err.message}`));
    const timer = setTimeout(() => done(new WorkerStartError(`the worker did not become ready within ${timeoutMs} ms`, stderrTail.join("\n"))), timeoutMs);
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

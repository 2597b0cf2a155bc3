/**
 * Supervision of the worker process: spawn `python -m fpdiff.worker`, read its ready line (the
 * endpoint and the per-worker secret a client must present), keep the tail of its stderr for error
 * reports, observe its exit, and stop it (polite request first, then SIGTERM, then SIGKILL).
 *
 * Nothing here speaks the protocol; that is the request client's job (client.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { WorkerStartError } from "../protocol/errors.js";
import { PROJECT_ROOT } from "../paths.js";
import { resolvePython, workerEnv } from "./python.js";

/** What the worker prints once on stdout when it listens: where, and how to prove who we are. */
export interface ReadyLine {
  endpoint: string;
  pid: number;
  protocol: number;
  /** ZeroMQ PLAIN credentials the worker's authenticator accepts (and nothing else). */
  auth: { username: string; password: string };
}

export interface ProcessOptions {
  python?: string | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  cwd?: string | undefined;
  args: string[];
  startTimeoutMs: number;
  onStderr?: ((line: string) => void) | undefined;
}

const STDERR_LINES = 40;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class WorkerProcess {
  readonly pid: number;
  readonly python: string;
  readonly ready: ReadyLine;
  /** Resolves with the exit status once the process is gone. */
  readonly exited: Promise<ExitInfo>;
  private readonly child: ChildProcess;
  private readonly tail: string[];
  private exitInfo: ExitInfo | undefined;

  private constructor(child: ChildProcess, python: string, ready: ReadyLine, tail: string[]) {
    this.child = child;
    this.pid = child.pid!;
    this.python = python;
    this.ready = ready;
    this.tail = tail;
    this.exited = new Promise((resolve) => {
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      };
      if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode);
      else child.once("exit", onExit);
    });
  }

  /** Spawn the worker and wait for its ready line. */
  static async spawn(opts: ProcessOptions): Promise<WorkerProcess> {
    const { python } = resolvePython(opts.python);
    const child = spawn(python, ["-m", "fpdiff.worker", ...opts.args], {
      cwd: opts.cwd ?? PROJECT_ROOT,
      env: workerEnv(opts.env),
      stdio: ["pipe", "pipe", "pipe"],
      // Own process group: a terminal Ctrl-C reaches us, and we cancel the worker politely.
      detached: true,
    });
    const tail: string[] = [];
    let buf = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        tail.push(line);
        if (tail.length > STDERR_LINES) tail.shift();
        opts.onStderr?.(line);
      }
    });
    child.stdin!.on("error", () => {}); // EPIPE when the worker is gone: reported through 'exit'
    const ready = await waitForReady(child, python, tail, opts.startTimeoutMs);
    child.stdout!.resume(); // nothing more is expected there; never let the pipe fill
    const proc = new WorkerProcess(child, python, ready, tail);
    // Neither the process nor its pipes keep Node alive: the caller closes or abandons the worker.
    child.unref();
    for (const s of [child.stdout, child.stderr]) (s as unknown as { unref?: () => void })?.unref?.();
    return proc;
  }

  /** The last lines the worker wrote on stderr. */
  get stderrTail(): string {
    return this.tail.join("\n");
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (!this.hasExited) this.child.kill(signal);
  }

  /** Wait `graceMs` for an exit already asked for, then SIGTERM, then SIGKILL. */
  async stop(graceMs: number): Promise<void> {
    if (!(await within(this.exited, graceMs))) {
      this.kill("SIGTERM");
      if (!(await within(this.exited, 2000))) {
        this.kill("SIGKILL");
        await this.exited;
      }
    }
    this.child.stdin?.destroy();
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
  }
}

/** True when `p` settles within `ms`. */
export function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function parseReady(line: string): ReadyLine | undefined {
  try {
    const r = JSON.parse(line) as Partial<ReadyLine> & { ready?: boolean };
    if (r.ready && typeof r.endpoint === "string" && r.auth && typeof r.auth.password === "string" && typeof r.auth.username === "string") {
      return { endpoint: r.endpoint, pid: Number(r.pid), protocol: Number(r.protocol), auth: r.auth };
    }
  } catch {
    // not JSON: reported below
  }
  return undefined;
}

function waitForReady(child: ChildProcess, python: string, tail: string[], timeoutMs: number): Promise<ReadyLine> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const done = (err?: Error, ready?: ReadyLine) => {
      clearTimeout(timer);
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
      if (err) {
        child.kill("SIGKILL");
        reject(err);
      } else resolve(ready!);
    };
    const onData = (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      const ready = parseReady(line);
      if (ready) return done(undefined, ready);
      done(new WorkerStartError(`${python} printed something other than the worker's ready line: ${line.slice(0, 200)}`, tail.join("\n")));
    };
    // stderr may still be arriving when the process exits; give it a moment to land in the tail.
    const onExit = (code: number | null, signal: string | null) =>
      setTimeout(() => done(new WorkerStartError(`the worker (${python}) exited during start-up (${signal ?? `exit code ${code}`})`, tail.join("\n"))), 50);
    const onError = (err: Error) => done(new WorkerStartError(`cannot run ${python}: ${err.message}`));
    const timer = setTimeout(() => done(new WorkerStartError(`the worker did not become ready within ${timeoutMs} ms`, tail.join("\n"))), timeoutMs);
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

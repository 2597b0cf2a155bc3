/**
 * The one mapping from an error to what the CLI reports: a code, a message, the field or file at
 * fault, details, and the exit status — the same with and without `--json`.
 *
 * | exit | codes                                                                                  |
 * |------|----------------------------------------------------------------------------------------|
 * | 2    | USAGE (flags, arguments), CONFIG (the experiment), RUN_DIR (run directory files),      |
 * |      | CONFIG_CHANGED, and the worker's refusals: BAD_REQUEST, UNKNOWN_OP, TOO_LARGE, BUSY,   |
 * |      | VERSION_MISMATCH                                                                        |
 * | 3    | DIVERGED (a NaN/Inf loss; the last good checkpoint is kept)                            |
 * | 4    | RUN_LOCKED (another process trains in that run directory)                              |
 * | 130  | CANCELLED (Ctrl-C; a meta checkpoint was written)                                      |
 * | 1    | anything else: the worker could not start or crashed (WORKER_START, WORKER_CRASHED…),  |
 * |      | an unexpected error in the worker (WORKER_ERROR) or here (INTERNAL)                    |
 */
import { Errors } from "@oclif/core";
import { ConfigError } from "../dsl/errors.js";
import { FpdError, RequestError, WorkerCrashedError } from "../protocol/errors.js";

/** What a failed command reports; `--json` prints `{error: {code, message, path?, details?}}`. */
export interface Failure {
  code: string;
  message: string;
  /** The field (`optim.lr`, `args.checkpoint`) or file the error is about. */
  path?: string;
  details?: Record<string, unknown>;
  exit: number;
}

const EXIT: Record<string, number> = {
  USAGE: 2,
  CONFIG: 2,
  RUN_DIR: 2,
  CONFIG_CHANGED: 2,
  BAD_REQUEST: 2,
  UNKNOWN_OP: 2,
  TOO_LARGE: 2,
  BUSY: 2,
  VERSION_MISMATCH: 2,
  DIVERGED: 3,
  RUN_LOCKED: 4,
  CANCELLED: 130,
};

/** A problem with what the user typed (a flag's value, a missing argument, a file that is not there). */
export class UsageError extends FpdError {
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super("USAGE", message);
    this.path = path;
  }
}

export function exitCodeOf(code: string): number {
  return EXIT[code] ?? 1;
}

function clean(details: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!details) return undefined;
  const out = Object.fromEntries(Object.entries(details).filter(([, v]) => v !== undefined));
  return Object.keys(out).length ? out : undefined;
}

/** Classify any error a command can end with. */
export function describeFailure(err: unknown): Failure {
  const make = (code: string, message: string, path?: string, details?: Record<string, unknown>): Failure => {
    const f: Failure = { code, message, exit: exitCodeOf(code) };
    if (path) f.path = path;
    const d = clean(details);
    if (d) f.details = d;
    return f;
  };
  if (err instanceof ConfigError) return make("CONFIG", err.message, err.path || undefined, { issues: err.issues });
  if (err instanceof RequestError) {
    return make(err.code, err.message, err.field, { op: err.op, ...(err.details ?? {}), traceback: err.traceback });
  }
  if (err instanceof WorkerCrashedError) {
    return make(err.code, err.message, undefined, { exitCode: err.exitCode, signal: err.signal });
  }
  if (err instanceof FpdError) {
    const e = err as FpdError & { path?: string; details?: Record<string, unknown> };
    return make(e.code, e.message, e.path, e.details);
  }
  if (err instanceof Errors.CLIError) {
    // oclif's own: a flag or argument it could not parse (exit 2), or `this.error(...)`
    const parse = (err as { parse?: unknown }).parse !== undefined;
    const exit = err.oclif?.exit ?? 2;
    const f = make(parse || exit === 2 ? "USAGE" : "ERROR", err.message.replace(/^Error: /, ""));
    f.exit = exit;
    return f;
  }
  const e = err as Error;
  return make("INTERNAL", e?.message ?? String(err), undefined, { name: e?.name, stack: e?.stack });
}

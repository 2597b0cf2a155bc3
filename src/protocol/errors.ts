/** Error codes of the wire (shared with py/fpdiff/protocol.py) and the errors the bridge throws. */

export const ERROR_CODES = ["BAD_REQUEST", "UNKNOWN_OP", "CANCELLED", "BUSY", "WORKER_ERROR", "VERSION_MISMATCH", "TOO_LARGE", "DIVERGED"] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Base class of every fpdiff error; `code` tells them apart without instanceof. */
export class FpdError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A request refused or failed, by the worker or locally before sending (bad args, too large). */
export class RequestError extends FpdError {
  declare readonly code: ErrorCode;
  readonly op: string;
  readonly field: string | undefined;
  /** The Python traceback for WORKER_ERROR, when the worker sent one. */
  readonly traceback: string | undefined;
  /** Structured details the op attached (e.g. a checkpoint's missing keys and matching presets). */
  readonly details: Record<string, unknown> | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    opts: { op: string; field?: string | undefined; traceback?: string | undefined; details?: Record<string, unknown> | undefined },
  ) {
    super(code, `${opts.op}: ${message}`);
    this.op = opts.op;
    this.field = opts.field;
    this.traceback = opts.traceback;
    this.details = opts.details;
  }
}

/** The worker process died or stopped answering; every pending request gets one of these. */
export class WorkerCrashedError extends FpdError {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderrTail: string;
  constructor(message: string, info: { exitCode: number | null; signal: string | null; stderrTail: string }) {
    const tail = info.stderrTail.trim() ? `\n--- last lines of the worker's stderr ---\n${info.stderrTail.trimEnd()}` : "";
    super("WORKER_CRASHED", message + tail);
    this.exitCode = info.exitCode;
    this.signal = info.signal;
    this.stderrTail = info.stderrTail;
  }
}

/** The worker could not be started (wrong interpreter, missing packages, start-up timeout). */
export class WorkerStartError extends FpdError {
  readonly stderrTail: string;
  constructor(message: string, stderrTail = "") {
    const tail = stderrTail.trim() ? `\n--- worker stderr ---\n${stderrTail.trimEnd()}` : "";
    super("WORKER_START", `${message}${tail}\nRun \`npx fpd doctor\` for a diagnosis of the Python environment.`);
    this.stderrTail = stderrTail;
  }
}

/** No answer within the request's `timeoutMs`; a cancel was sent for it. */
export class RequestTimeoutError extends FpdError {
  constructor(op: string, ms: number) {
    super("TIMEOUT", `${op}: no answer within ${ms} ms (a cancel was sent)`);
  }
}

/** The worker answered something that does not match the op's schema. */
export class BadReplyError extends FpdError {
  constructor(op: string, message: string) {
    super("BAD_REPLY", `${op}: the worker's reply does not match the protocol: ${message}`);
  }
}

/** The worker was closed while the request was pending. */
export class WorkerClosedError extends FpdError {
  constructor(message = "the worker was closed") {
    super("WORKER_CLOSED", message);
  }
}

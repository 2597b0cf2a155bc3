/**
 * The request client: one authenticated DEALER socket to the worker's ROUTER, typed requests
 * multiplexed over it by id, events and results routed back to their request, and liveness by
 * heartbeat while anything waits for an answer.
 *
 * Flow control: at most `maxInFlight` requests are on the wire at once; the rest wait here, in
 * order, and are sent as answers come back. So the worker never holds more replies than that for
 * us, and a burst of any size is answered in full. Past `maxQueued` waiting requests a new one is
 * refused at once (BUSY) rather than left to hang.
 */
import { Dealer } from "zeromq";
import { decode, encode, peekHeader } from "../protocol/codec.js";
import { ErrorData } from "../protocol/envelope.js";
import { BadReplyError, RequestError, RequestTimeoutError, WorkerClosedError } from "../protocol/errors.js";
import { opDef, type OpArgs, type OpEvent, type OpName, type OpResult } from "../protocol/ops/index.js";
import { PROTOCOL_VERSION } from "../protocol/version.js";

export interface RequestOptions<E> {
  onEvent?: (event: E) => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface ClientOptions {
  endpoint: string;
  /** The worker's PLAIN credentials (from its ready line). */
  auth: { username: string; password: string };
  maxMessageBytes: number;
  /** Silence (while requests are pending) after which `onHung` is called; see `setLiveness`. */
  livenessTimeoutMs: number;
  maxInFlight: number;
  maxQueued: number;
  onHung: (silentMs: number) => void;
}

interface Pending {
  op: string;
  validate: boolean;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  onEvent: ((event: unknown) => void) | undefined;
  cleanup: () => void;
  /** The encoded request while it waits for a slot; undefined once sent. */
  payload: Buffer | undefined;
}

export const DEFAULT_MAX_IN_FLIGHT = 1024;
export const DEFAULT_MAX_QUEUED = 1_000_000;

export class RequestClient {
  private readonly sock: Dealer;
  private readonly opts: ClientOptions;
  private readonly pending = new Map<number, Pending>();
  /** Ids waiting for a slot, oldest first (`backlogHead` indexes the next one). */
  private backlog: number[] = [];
  private backlogHead = 0;
  private inFlight = 0;
  /** The most requests that were on the wire at once (flow-control tests read it). */
  peakInFlight = 0;
  private nextId = 1;
  private sending = false;
  private readonly sendQueue: { payload: Buffer; resolve: () => void; reject: (err: Error) => void }[] = [];
  private lastHeard = Date.now();
  private heartbeat: NodeJS.Timeout | undefined;
  private pingInFlight = false;
  private dead: Error | undefined;
  private livenessTimeoutMs: number;

  constructor(opts: ClientOptions) {
    this.opts = opts;
    this.livenessTimeoutMs = opts.livenessTimeoutMs;
    this.sock = new Dealer({ linger: 0, plainUsername: opts.auth.username, plainPassword: opts.auth.password });
    this.sock.connect(opts.endpoint);
    void this.receiveLoop();
  }

  /**
   * Change how long the worker may stay silent while requests wait (the start-up handshake runs
   * under the start timeout; the steady-state limit applies from then on).
   */
  setLiveness(ms: number): void {
    this.livenessTimeoutMs = ms;
    if (this.heartbeat) {
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
      this.updateHeartbeat();
    }
  }

  /** True until `fail` was called (the worker exited, hung, or was closed). */
  get alive(): boolean {
    return this.dead === undefined;
  }

  /** Requests waiting for an answer, sent or not. */
  get pendingCount(): number {
    return this.pending.size;
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

  /** Ask the worker to stop, ahead of any request still waiting for a slot. */
  shutdown(timeoutMs: number): Promise<unknown> {
    return this.send("shutdown", {}, { timeoutMs }, false, true);
  }

  private send(op: string, args: unknown, opts: RequestOptions<unknown>, validate: boolean, urgent = false): Promise<unknown> {
    if (this.dead) return Promise.reject(this.dead);
    if (opts.signal?.aborted) return Promise.reject(new RequestError("CANCELLED", "aborted before it was sent", { op }));
    const waiting = this.backlog.length - this.backlogHead;
    if (waiting >= this.opts.maxQueued) {
      return Promise.reject(new RequestError("BUSY", `${waiting} requests already wait to be sent; retry later`, { op }));
    }
    const id = this.nextId++;
    let payload: Buffer;
    try {
      payload = encode({ v: PROTOCOL_VERSION, id, op, args });
    } catch (err) {
      return Promise.reject(new RequestError("BAD_REQUEST", `args cannot be encoded: ${(err as Error).message}`, { op, field: "args" }));
    }
    if (payload.byteLength > this.opts.maxMessageBytes) {
      return Promise.reject(
        new RequestError("TOO_LARGE", `request of ${payload.byteLength} bytes exceeds the limit of ${this.opts.maxMessageBytes} bytes`, { op }),
      );
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.cancel(id, "aborted");
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        const p = this.pending.get(id);
        this.pending.delete(id);
        if (p && p.payload === undefined) {
          this.inFlight -= 1;
          this.pump();
        }
      };
      this.pending.set(id, { op, validate, resolve, reject, onEvent: opts.onEvent, cleanup, payload });
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      if (opts.timeoutMs !== undefined) {
        const ms = opts.timeoutMs;
        timer = setTimeout(() => this.cancel(id, "timeout", ms), ms);
      }
      this.updateHeartbeat();
      if (urgent || (this.inFlight < this.opts.maxInFlight && this.backlogHead === this.backlog.length)) this.transmit(id);
      else this.backlog.push(id);
    });
  }

  /** Put request `id` on the wire (it holds a slot until answered). */
  private transmit(id: number): void {
    const p = this.pending.get(id)!;
    const payload = p.payload!;
    p.payload = undefined;
    this.inFlight += 1;
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight;
    this.write(payload).catch((err: Error) => {
      const q = this.pending.get(id);
      if (q) {
        q.cleanup();
        q.reject(this.dead ?? new WorkerClosedError(`could not send ${q.op}: ${err.message}`));
      }
    });
  }

  /** Send waiting requests while slots are free. */
  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.backlogHead < this.backlog.length) {
      const id = this.backlog[this.backlogHead++]!;
      if (this.pending.has(id)) this.transmit(id);
    }
    if (this.backlogHead > 4096 && this.backlogHead * 2 > this.backlog.length) {
      this.backlog = this.backlog.slice(this.backlogHead);
      this.backlogHead = 0;
    }
  }

  /** Abort or time out a request: locally if it was never sent, else by a cancel to the worker. */
  private cancel(id: number, why: "aborted" | "timeout", ms = 0): void {
    const p = this.pending.get(id);
    if (!p) return;
    const unsent = p.payload !== undefined;
    if (!unsent && !this.dead) {
      this.write(encode({ v: PROTOCOL_VERSION, id: this.nextId++, op: "cancel", args: { target: id } })).catch(() => {});
    }
    if (why === "timeout") {
      p.cleanup();
      p.reject(new RequestTimeoutError(p.op, ms));
    } else if (unsent) {
      p.cleanup();
      p.reject(new RequestError("CANCELLED", "cancelled by the client before it was sent", { op: p.op }));
    }
    // an aborted request already on the wire is answered CANCELLED by the worker
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

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.sock) {
        this.lastHeard = Date.now();
        this.dispatch(frames[frames.length - 1]!);
      }
    } catch (err) {
      if (!this.dead) this.fail(new WorkerClosedError(`the bridge socket failed: ${(err as Error).message}`));
    }
  }

  private dispatch(msg: Buffer): void {
    if (msg.byteLength > this.opts.maxMessageBytes) {
      const head = peekHeader(msg);
      this.failOne(head.id, (op) => new RequestError("TOO_LARGE", `reply of ${msg.byteLength} bytes exceeds the limit of ${this.opts.maxMessageBytes} bytes`, { op }));
      return;
    }
    let doc: { v?: unknown; id?: unknown; kind?: unknown; data?: unknown };
    try {
      doc = decode(msg) as typeof doc;
    } catch (err) {
      const head = peekHeader(msg);
      this.failOne(head.id, (op) => new BadReplyError(op, `undecodable message: ${(err as Error).message}`));
      return;
    }
    if (typeof doc !== "object" || doc === null) return;
    const p = typeof doc.id === "number" ? this.pending.get(doc.id) : undefined;
    if (!p || p.payload !== undefined) return; // a late reply to a request that timed out, or to an internal ping
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
            this.cancel(doc.id as number, "aborted");
            p.cleanup();
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

  private failOne(id: unknown, make: (op: string) => Error): void {
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
      this.opts.onHung(silent);
      return;
    }
    if (silent > this.livenessTimeoutMs / 4 && !this.pingInFlight) {
      this.pingInFlight = true;
      // outside flow control: it only has to make the worker say something
      this.write(encode({ v: PROTOCOL_VERSION, id: this.nextId++, op: "ping", args: {} }))
        .catch(() => {})
        .finally(() => (this.pingInFlight = false));
    }
  }

  /** Reject every pending request with `err` and close the socket; later requests get `err` too. */
  fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const all = [...this.pending.values()];
    this.pending.clear();
    this.backlog = [];
    this.backlogHead = 0;
    for (const p of all) {
      p.cleanup(); // finds nothing in `pending` any more, so it frees no slot and sends nothing
      p.reject(err);
    }
    this.sock.close();
  }
}

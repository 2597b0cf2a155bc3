// The request client (src/bridge/client.ts) against a real Python worker over a real ZeroMQ socket:
// typed requests, events, cancellation, errors, limits and flow control.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DTYPES,
  PROTOCOL_VERSION,
  RequestError,
  Tensor,
  decode,
  encode,
  tensor,
  type DType,
  Worker,
} from "../../src/index.js";
import { peakRss, rawDealer, rawRoundTrip as roundTrip } from "../helpers/bridge.js";

let worker: Worker;
beforeAll(async () => {
  // liveness is worker.test.ts's subject; here a loaded machine must not turn a slow 64 MB echo
  // (answered on the worker's I/O thread) into a declared hang for every later test
  worker = await Worker.start({ livenessTimeoutMs: 120_000 });
});
afterAll(async () => {
  await worker?.close();
});

const rawRoundTrip = (payload: Buffer | Buffer[]) => roundTrip(worker, payload);

function sample(dtype: DType, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: n }, (_, i) => ((i * 7919) % 251) - 120);
  if (dtype === "uint8") return tensor(values.map((v) => v & 0xff), shape, dtype);
  if (dtype === "bool") return tensor(values.map((v) => (v > 0 ? 1 : 0)), shape, dtype);
  if (dtype === "float16" || dtype === "bfloat16") {
    // arbitrary bit patterns (NaN payloads included) must survive untouched
    return new Tensor(dtype, shape, Uint16Array.from(values, (v, i) => (v * 263 + i) & 0xffff));
  }
  if (dtype === "float32" || dtype === "float64") return tensor(values.map((v, i) => v / 3 + i * 1e-3), shape, dtype);
  return tensor(values, shape, dtype);
}

function sameBits(a: Tensor, b: Tensor): boolean {
  return a.dtype === b.dtype && JSON.stringify(a.shape) === JSON.stringify(b.shape) && Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes)) === 0;
}

describe("handshake", () => {
  it("hello reports the protocol, versions, devices and ops", async () => {
    const info = await worker.request("hello", {});
    expect(info.protocol).toBe(PROTOCOL_VERSION);
    expect(info.pid).toBe(worker.pid);
    expect(info.versions.torch).toMatch(/^\d+\.\d+/);
    expect(info.versions.pyzmq).toMatch(/^\d+\./);
    expect(info.devices[0]!.type).toBe("cpu");
    expect(info.ops).toEqual(expect.arrayContaining(["hello", "ping", "echo", "sleep", "cancel", "shutdown"]));
  });

  it("ping answers", async () => {
    const r = await worker.request("ping", {});
    expect(r.pong).toBe(true);
    expect(Math.abs(r.time * 1000 - Date.now())).toBeLessThan(60_000);
  });
});

describe("echo", () => {
  for (const dtype of DTYPES) {
    it(`returns ${dtype} tensors bit for bit (1-d, 3-d, empty, 0-d)`, async () => {
      const inputs = {
        vec: sample(dtype, [17]),
        cube: sample(dtype, [2, 3, 5]),
        empty: sample(dtype, [0, 4]),
        scalar: sample(dtype, []),
      };
      const out = (await worker.request("echo", inputs)) as Record<string, Tensor>;
      for (const [k, v] of Object.entries(inputs)) {
        expect(out[k]).toBeInstanceOf(Tensor);
        expect(sameBits(out[k]!, v), `${dtype} ${k}`).toBe(true);
      }
    });
  }

  it("returns a 64 MB tensor and nested plain values unchanged", async () => {
    const n = 16 * 1024 * 1024;
    const big = tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i)), [4096, 4096]);
    const nested = { a: [1, 2.5, "x", null, true], b: { c: { d: -3 } }, s: "ünïcödé" };
    const out = (await worker.request("echo", { big, nested })) as { big: Tensor; nested: unknown };
    expect(sameBits(out.big, big)).toBe(true);
    expect(out.nested).toEqual(nested);
  });

  it("answers 200 concurrent requests, each with its own id", async () => {
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => worker.request("echo", { i, t: tensor([i, -2 * i - 1], [2], "int32") })),
    );
    replies.forEach((r, i) => {
      expect(r.i).toBe(i);
      expect((r.t as Tensor).toArray()).toEqual([i, -2 * i - 1]);
    });
  });
});

describe("long ops", () => {
  it("streams events before the result", async () => {
    const ticks: number[] = [];
    const r = await worker.request("sleep", { seconds: 0.3, tick: 0.05 }, { onEvent: (e) => ticks.push(e.tick) });
    expect(r.ticks).toBeGreaterThanOrEqual(3);
    expect(ticks).toEqual(Array.from({ length: r.ticks }, (_, i) => i + 1));
  });

  it("cancel via AbortSignal gives CANCELLED and the worker keeps serving", async () => {
    const ac = new AbortController();
    const started = Date.now();
    const p = worker.request("sleep", { seconds: 30 }, { signal: ac.signal });
    setTimeout(() => ac.abort(), 150);
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).code).toBe("CANCELLED");
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await worker.request("ping", {})).pong).toBe(true);
  });

  it("cancels a queued request before it starts", async () => {
    const ac = new AbortController();
    const first = worker.request("sleep", { seconds: 0.5 });
    const second = worker.request("sleep", { seconds: 30 }, { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    const err = await second.catch((e: unknown) => e);
    expect((err as RequestError).code).toBe("CANCELLED");
    expect((err as RequestError).message).toMatch(/before it started/);
    expect((await first).slept).toBeGreaterThan(0.4);
  });

  it("a timeout rejects and cancels the request on the worker", async () => {
    const err = await worker.request("sleep", { seconds: 30 }, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect((err as { code: string }).code).toBe("TIMEOUT");
    // the worker is free again soon: a short sleep completes
    expect((await worker.request("sleep", { seconds: 0.01 }, { timeoutMs: 10_000 })).ticks).toBeGreaterThanOrEqual(1);
  });
});

describe("bad input gets a specific error and the worker stays healthy", () => {
  const expectHealthy = async () => expect((await worker.request("ping", {})).pong).toBe(true);

  it("unknown op", async () => {
    const err = (await worker.requestRaw("no.such.op", {}).catch((e: unknown) => e)) as RequestError;
    expect(err.code).toBe("UNKNOWN_OP");
    expect(err.field).toBe("envelope.op");
    expect(err.message).toMatch(/no\.such\.op/);
    await expectHealthy();
  });

  it("wrong argument types, caught in TypeScript and, sent raw, in Python", async () => {
    const local = (await worker.request("sleep", { seconds: "soon" as unknown as number }).catch((e: unknown) => e)) as RequestError;
    expect(local.code).toBe("BAD_REQUEST");
    expect(local.field).toBe("args.seconds");
    const remote = (await worker.requestRaw("sleep", { seconds: "soon" }).catch((e: unknown) => e)) as RequestError;
    expect(remote.code).toBe("BAD_REQUEST");
    expect(remote.field).toBe("args.seconds");
    expect(remote.message).toMatch(/expected a number/);
    const unknownField = (await worker.requestRaw("sleep", { seconds: 0, snooze: 1 }).catch((e: unknown) => e)) as RequestError;
    expect(unknownField.field).toBe("args.snooze");
    await expectHealthy();
  });

  it("malformed envelopes", async () => {
    const notMsgpack = await rawRoundTrip(Buffer.from([0xc1, 0x00, 0xff]));
    expect(notMsgpack.kind).toBe("error");
    expect((notMsgpack.data as { code: string }).code).toBe("BAD_REQUEST");

    const notAMap = await rawRoundTrip(encode([1, 2, 3]));
    expect((notAMap.data as { code: string; field: string }).field).toBe("envelope");

    const badId = await rawRoundTrip(encode({ v: PROTOCOL_VERSION, id: { x: 1 }, op: "ping", args: {} }));
    expect((badId.data as { field: string }).field).toBe("envelope.id");

    const extra = await rawRoundTrip(encode({ v: PROTOCOL_VERSION, id: 7, op: "ping", args: {}, sneaky: 1 }));
    expect(extra.id).toBe(7);
    expect((extra.data as { field: string }).field).toBe("envelope.sneaky");

    const badTensor = Buffer.from(encode({ v: PROTOCOL_VERSION, id: 8, op: "echo", args: { x: tensor([1, 2, 3, 4]) } }));
    // corrupt the shape so that it disagrees with the byte length: [4] -> [5]
    const at = badTensor.indexOf(Buffer.from([1, 2, 1, 0, 0, 0, 0, 0, 4]));
    expect(at).toBeGreaterThan(0);
    badTensor[at + 8] = 5;
    const mismatch = await rawRoundTrip(badTensor);
    expect(mismatch.id).toBe(8);
    expect((mismatch.data as { code: string; message: string }).code).toBe("BAD_REQUEST");
    expect((mismatch.data as { message: string }).message).toMatch(/needs 20 data bytes but carries 16/);
    await expectHealthy();
  });

  it("a message of two frames is answered BAD_REQUEST", async () => {
    const r = await rawRoundTrip([encode({ v: PROTOCOL_VERSION, id: 11, op: "ping", args: {} }), Buffer.from("extra")]);
    expect(r.id).toBe(11);
    expect(r.kind).toBe("error");
    expect(r.data).toMatchObject({ code: "BAD_REQUEST", field: "envelope" });
    expect((r.data as { message: string }).message).toMatch(/one message frame, got 2/);
    await expectHealthy();
  });

  it("protocol version mismatch", async () => {
    const r = await rawRoundTrip(encode({ v: PROTOCOL_VERSION + 41, id: 9, op: "ping", args: {} }));
    expect(r.id).toBe(9);
    expect((r.data as { code: string }).code).toBe("VERSION_MISMATCH");
    await expectHealthy();
  });
});

describe("limits", () => {
  let small: Worker;
  beforeAll(async () => {
    small = await Worker.start({ maxMessageBytes: 1 << 20, args: ["--max-queue", "1"] });
  });
  afterAll(async () => {
    await small?.close();
  });

  it("refuses an oversized request locally with TOO_LARGE", async () => {
    const err = (await small.request("echo", { x: tensor(new Float32Array(1 << 19)) }).catch((e: unknown) => e)) as RequestError;
    expect(err.code).toBe("TOO_LARGE");
    expect((await small.request("ping", {})).pong).toBe(true);
  });

  it("the worker answers a message just over its limit with TOO_LARGE, naming the request", async () => {
    const msg = encode({ v: PROTOCOL_VERSION, id: 42, op: "echo", args: { x: tensor(new Float32Array((1 << 18) + 64)) } });
    expect(msg.byteLength).toBeGreaterThan(1 << 20);
    const reply = (await roundTrip(small, msg)) as { id: number; data: { code: string; message: string } };
    expect(reply.id).toBe(42);
    expect(reply.data.code).toBe("TOO_LARGE");
    expect((await small.request("ping", {})).pong).toBe(true);
  });

  it("a grossly oversized message is cut off by ZeroMQ before the worker buffers it", async () => {
    const before = peakRss(small.pid);
    const sock = rawDealer(small, small.credentials, 1500);
    const huge = Buffer.alloc(192 << 20, 0x41); // 192 MiB against a 1 MiB limit
    await sock.send(huge);
    // no reply: the peer is disconnected by MAXMSGSIZE; it never reached the worker's code
    await expect(sock.receive()).rejects.toThrow();
    sock.close();
    const grown = peakRss(small.pid) - before;
    expect(grown).toBeLessThan(32 << 20);
    expect((await small.request("ping", {})).pong).toBe(true);
  });

  it("answers BUSY when its queue is full", async () => {
    const running = small.request("sleep", { seconds: 0.4 });
    await new Promise((r) => setTimeout(r, 50));
    const queued = small.request("sleep", { seconds: 0.01 });
    const refused = (await small.request("sleep", { seconds: 0.01 }).catch((e: unknown) => e)) as RequestError;
    expect(refused.code).toBe("BUSY");
    await Promise.all([running, queued]);
  });
});


describe("flow control: no reply is ever dropped", () => {
  it("20,000 concurrent pings are all answered, with a bounded number on the wire and bounded memory", { timeout: 120_000 }, async () => {
    const w = await Worker.start({ maxInFlight: 256 });
    try {
      const before = peakRss(w.pid);
      const n = 20_000;
      const replies = await Promise.all(Array.from({ length: n }, () => w.request("ping", {})));
      expect(replies.filter((r) => r.pong === true)).toHaveLength(n);
      expect(w.peakInFlight).toBeLessThanOrEqual(256);
      expect(w.peakInFlight).toBeGreaterThan(1);
      expect(peakRss(w.pid) - before).toBeLessThan(64 << 20);
      // and a burst through the raw socket, with no flow control at all, loses nothing either
      const sock = rawDealer(w, w.credentials, 10_000);
      for (let i = 0; i < 5000; i++) await sock.send(encode({ v: PROTOCOL_VERSION, id: i, op: "ping", args: {} }));
      const seen = new Set<number>();
      while (seen.size < 5000) seen.add((decode((await sock.receive())[0]!) as { id: number }).id);
      sock.close();
      expect(seen.size).toBe(5000);
    } finally {
      await w.close();
    }
  });

  it("past maxQueued a request is refused at once rather than left to hang", async () => {
    const w = await Worker.start({ maxInFlight: 1, maxQueued: 2 });
    try {
      const running = w.request("sleep", { seconds: 0.3 });
      const waiting = [w.request("ping", {}), w.request("ping", {})];
      const refused = (await w.request("ping", {}).catch((e: unknown) => e)) as RequestError;
      expect(refused.code).toBe("BUSY");
      expect(refused.message).toMatch(/2 requests already wait/);
      await running;
      expect((await Promise.all(waiting)).every((r) => r.pong)).toBe(true);
    } finally {
      await w.close();
    }
  });

  it("a request aborted while it waits for a slot is cancelled without reaching the worker", async () => {
    const w = await Worker.start({ maxInFlight: 1 });
    try {
      const running = w.request("sleep", { seconds: 0.3 });
      const ac = new AbortController();
      const waiting = w.request("sleep", { seconds: 30 }, { signal: ac.signal });
      ac.abort();
      const err = (await waiting.catch((e: unknown) => e)) as RequestError;
      expect(err.code).toBe("CANCELLED");
      expect(err.message).toMatch(/before it was sent/);
      await running;
      expect((await w.request("ping", {})).pong).toBe(true);
    } finally {
      await w.close();
    }
  });

  it("close() is not held up by requests waiting for a slot", async () => {
    const w = await Worker.start({ maxInFlight: 1 });
    const running = w.request("sleep", { seconds: 30 }).catch((e: unknown) => e);
    const waiting = Array.from({ length: 5 }, () => w.request("ping", {}).catch((e: unknown) => e));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await w.close();
    expect(Date.now() - t0).toBeLessThan(8000); // the shutdown went first: no 10 s grace period, no SIGTERM
    for (const e of [await running, ...(await Promise.all(waiting))]) expect((e as { code: string }).code).toMatch(/CANCELLED|WORKER_CLOSED|WORKER_CRASHED/);
  });
});

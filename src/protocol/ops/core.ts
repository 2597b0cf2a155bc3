/** Ops of the bridge itself (py/fpdiff/ops/core.py). */
import { z } from "zod";
import { defineOp } from "./define.js";

export const Device = z.object({
  name: z.string(),
  type: z.enum(["cpu", "cuda"]),
  model: z.string().optional(),
  memoryBytes: z.number().optional(),
  capability: z.string().optional(),
  threads: z.number().int().optional(),
});
export type Device = z.infer<typeof Device>;

export const HelloResult = z.object({
  protocol: z.number().int(),
  pid: z.number().int(),
  versions: z.object({
    python: z.string(),
    executable: z.string(),
    numpy: z.string(),
    pyzmq: z.string(),
    libzmq: z.string(),
    msgpack: z.string(),
    torch: z.string().nullable(),
    torchdiffeq: z.string().nullable(),
  }),
  devices: z.array(Device),
  ops: z.array(z.string()),
});
export type HelloResult = z.infer<typeof HelloResult>;

export const coreOps = {
  hello: defineOp({
    args: z.object({}).strict(),
    result: HelloResult,
    compute: false,
    doc: "protocol version, library versions, devices and the list of ops",
  }),
  ping: defineOp({
    args: z.object({}).strict(),
    result: z.object({ pong: z.literal(true), time: z.number() }),
    compute: false,
    doc: "liveness check, answered even while a compute op runs",
  }),
  echo: defineOp({
    args: z.record(z.string(), z.unknown()),
    result: z.record(z.string(), z.unknown()),
    compute: false,
    doc: "returns its args unchanged, tensors included",
  }),
  sleep: defineOp({
    args: z.object({ seconds: z.number().nonnegative(), tick: z.number().min(0.001).default(0.05) }).strict(),
    result: z.object({ slept: z.number(), ticks: z.number().int() }),
    event: z.object({ tick: z.number().int(), elapsed: z.number() }),
    doc: "cooperative, cancellable sleep that emits a tick event (for tests)",
  }),
  cancel: defineOp({
    args: z.object({ target: z.union([z.number().int(), z.string()]) }).strict(),
    result: z.object({ target: z.union([z.number().int(), z.string()]), state: z.enum(["running", "queued", "unknown"]) }),
    compute: false,
    doc: "cancel a queued or running request; the target answers CANCELLED",
  }),
  shutdown: defineOp({
    args: z.object({}).strict(),
    result: z.object({ stopping: z.literal(true) }),
    compute: false,
    doc: "cancel what runs and exit",
  }),
} as const;

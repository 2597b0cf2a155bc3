/**
 * Bridge benchmark (`npm run bench:bridge`): ping latency, echo throughput of float32 tensors,
 * the same transfers through pythonia for comparison, and worker start-up time.
 * Writes bench/results/bridge.json with the machine.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { openPython } from "../src/api/python.js";
import { Worker } from "../src/bridge/worker.js";
import { tensor, Tensor } from "../src/protocol/tensor.js";
import { PROJECT_ROOT } from "../src/paths.js";
import { machine, median, quantile } from "./machine.js";

const MB = 1 << 20;
const quick = process.argv.includes("--quick");
const out = join(PROJECT_ROOT, "bench", "results", quick ? "bridge.quick.json" : "bridge.json");
const log = (s: string) => console.error(`[bench:bridge] ${s}`);

async function pingLatency(w: Worker, n: number) {
  for (let i = 0; i < 200; i++) await w.request("ping", {});
  const us: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await w.request("ping", {});
    us.push((performance.now() - t) * 1000);
  }
  us.sort((a, b) => a - b);
  return { calls: n, p50Us: quantile(us, 0.5), p90Us: quantile(us, 0.9), p99Us: quantile(us, 0.99), maxUs: us[us.length - 1]! };
}

async function echoThroughput(w: Worker, bytes: number, reps: number) {
  const x = tensor(Float32Array.from({ length: bytes / 4 }, (_, i) => i % 1000), [bytes / 4]);
  await w.request("echo", { x }); // warm the allocators on both sides
  const secs: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    const r = (await w.request("echo", { x })) as { x: Tensor };
    secs.push((performance.now() - t) / 1000);
    if (r.x.numel !== x.numel) throw new Error("echo returned a different tensor");
  }
  const s = median(secs);
  return { mb: bytes / MB, reps, medianSeconds: s, minSeconds: Math.min(...secs), gbPerSecond: (2 * bytes) / s / 1e9 };
}

async function pythoniaThroughput(bytes: number, reps: number) {
  const { python, close } = await openPython();
  try {
    // pythonia moves JSON: the cheapest faithful carrier of bytes is a base64 string, and
    // builtins.str is an identity on it, so one call is one round trip of the payload.
    const builtins = await python("builtins");
    const payload = Buffer.alloc(bytes, 7).toString("base64");
    const fn = (s: string) => builtins.str(s) as Promise<string>;
    await fn(payload);
    const secs: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t = performance.now();
      const back = (await fn(payload)) as string;
      secs.push((performance.now() - t) / 1000);
      if (back.length !== payload.length) throw new Error("pythonia echo changed the payload");
    }
    const s = median(secs);
    return { mb: bytes / MB, reps, encoding: "base64 string (JSON-RPC)", medianSeconds: s, gbPerSecond: (2 * bytes) / s / 1e9 };
  } finally {
    close();
  }
}

async function startup(n: number) {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const w = await Worker.start();
    ms.push(performance.now() - t);
    await w.close();
  }
  return { starts: n, medianMs: median(ms), minMs: Math.min(...ms), note: "spawn + import torch + bind + hello handshake" };
}

const w = await Worker.start();
const info = w.info;
log("ping latency");
const ping = await pingLatency(w, quick ? 500 : 5000);
log(`ping p50 ${ping.p50Us.toFixed(0)} µs, p99 ${ping.p99Us.toFixed(0)} µs`);
const echo = [];
for (const [mb, reps] of quick ? [[1, 5]] : [[1, 50], [64, 7], [256, 3]]) {
  log(`echo ${mb} MB`);
  const r = await echoThroughput(w, mb! * MB, reps!);
  log(`echo ${mb} MB: ${r.gbPerSecond.toFixed(2)} GB/s (median ${(r.medianSeconds * 1000).toFixed(1)} ms)`);
  echo.push(r);
}
await w.close();
const pythonia = [];
for (const [mb, reps] of quick ? [[1, 3]] : [[1, 10], [64, 3]]) {
  log(`pythonia ${mb} MB`);
  pythonia.push(await pythoniaThroughput(mb! * MB, reps!));
}
log("worker start-up");
const start = await startup(quick ? 2 : 5);

const result = {
  benchmark: "bridge",
  machine: machine({ python: info.versions.python, torch: info.versions.torch, pyzmq: info.versions.pyzmq, libzmq: info.versions.libzmq }),
  // glibc settings of the Node process (the worker always gets them, see src/bridge/python.ts)
  nodeMalloc: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("MALLOC_"))),
  targets: { pingP50Us: 150, echo64MbGbPerSecond: 1.0 },
  ping,
  echo,
  pythonia,
  startup: start,
  verdict: {
    pingP50: ping.p50Us <= 150 ? "met" : "missed",
    echo64Mb: (echo.find((e) => e.mb === 64)?.gbPerSecond ?? 0) >= 1 ? "met" : quick ? "not measured" : "missed",
  },
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result, null, 2));

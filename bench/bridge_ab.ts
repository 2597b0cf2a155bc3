/**
 * Side-by-side bridge benchmark: this checkout's bridge against another built checkout's (e.g. the
 * main branch before a change), in one process, rounds alternating A/B/B/A so that machine load
 * falls on both alike. Ping round trips and 1 MB / 64 MB echoes, and the CPU time per ping of
 * the Node process and of the worker (/proc, 10 ms ticks: a second view, though on a shared VM
 * it moves with contention too: ±40 % between rounds of the same code here); the ratio
 * this/baseline is the result (below 1: faster). Writes bench/results/bridge.ab.json with the
 * machine and its load.
 *
 *   node dist/bench/bridge_ab.js --baseline /path/to/other/checkout [--rounds 4] [--out file.json]
 *
 * The baseline needs its own `dist/` (npm run build there) and Python package; its `.venv` may be
 * a link to this one's.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "../src/bridge/worker.js";
import { numel, tensor, Tensor } from "../src/protocol/tensor.js";
import { PROJECT_ROOT } from "../src/paths.js";
import { machine, median, quantile } from "./machine.js";

const MB = 1 << 20;
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const baselineDir = arg("--baseline");
if (!baselineDir) throw new Error("--baseline <checkout with dist/> is required");
const rounds = Number(arg("--rounds") ?? 4);
const log = (s: string) => console.error(`[bench:bridge-ab] ${s}`);

interface AnyWorker {
  readonly pid: number;
  request(op: string, args: unknown): Promise<unknown>;
  close(): Promise<void>;
}
interface Impl {
  name: string;
  start: () => Promise<AnyWorker>;
}

const baselineModule = (await import(pathToFileURL(join(resolve(baselineDir), "dist", "src", "bridge", "worker.js")).href)) as { Worker: { start(): Promise<AnyWorker> } };
const impls: Impl[] = [
  { name: "baseline", start: () => baselineModule.Worker.start() },
  { name: "this", start: () => Worker.start() as unknown as Promise<AnyWorker> },
];

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function measure(w: AnyWorker) {
  for (let i = 0; i < 200; i++) await w.request("ping", {});
  const ping: number[] = [];
  const n = 2000;
  // CPU per ping on each side: what each process spent, beside how long the round trip took
  const cpu0 = process.cpuUsage();
  const worker0 = cpuSeconds(w.pid);
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await w.request("ping", {});
    ping.push((performance.now() - t) * 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  const nodeCpuUs = (cpu.user + cpu.system) / n;
  const workerCpuUs = ((cpuSeconds(w.pid) - worker0) * 1e6) / n;
  const echo: Record<string, number[]> = {};
  for (const [mb, reps] of [[1, 20], [64, 5]] as const) {
    const x = tensor(Float32Array.from({ length: (mb * MB) / 4 }, (_, i) => i % 1000), [(mb * MB) / 4]);
    await w.request("echo", { x });
    echo[mb] = [];
    for (let i = 0; i < reps; i++) {
      const t = performance.now();
      const r = (await w.request("echo", { x })) as { x: Tensor };
      echo[mb]!.push((performance.now() - t) / 1000);
      // by shape: a baseline checkout's Tensor class may predate the numel getter
      if (numel(r.x.shape) !== x.numel) throw new Error("echo changed the tensor");
    }
  }
  return { ping, echo, nodeCpuUs, workerCpuUs };
}

interface Samples { ping: number[]; echo1: number[]; echo64: number[]; nodeCpuUs: number[]; workerCpuUs: number[] }
const samples: Record<string, Samples> = {
  baseline: { ping: [], echo1: [], echo64: [], nodeCpuUs: [], workerCpuUs: [] },
  this: { ping: [], echo1: [], echo64: [], nodeCpuUs: [], workerCpuUs: [] },
};
const loadBefore = machine({}).loadAverage;
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? impls : [...impls].reverse();
  for (const impl of order) {
    const w = await impl.start();
    const m = await measure(w);
    await w.close();
    samples[impl.name]!.ping.push(...m.ping);
    samples[impl.name]!.echo1.push(...m.echo[1]!);
    samples[impl.name]!.echo64.push(...m.echo[64]!);
    samples[impl.name]!.nodeCpuUs.push(m.nodeCpuUs);
    samples[impl.name]!.workerCpuUs.push(m.workerCpuUs);
    log(`round ${r + 1} ${impl.name}: ping p50 ${quantile([...m.ping].sort((a, b) => a - b), 0.5).toFixed(0)} µs, echo 64 MB ${(median(m.echo[64]!) * 1000).toFixed(0)} ms, CPU per ping node ${m.nodeCpuUs.toFixed(0)} µs + worker ${m.workerCpuUs.toFixed(0)} µs`);
  }
}

const summary = (s: Samples) => {
  const ping = [...s.ping].sort((a, b) => a - b);
  return {
    pingP50Us: quantile(ping, 0.5),
    pingP99Us: quantile(ping, 0.99),
    echo1MbGbPerSecond: (2 * MB) / median(s.echo1) / 1e9,
    echo64MbGbPerSecond: (2 * 64 * MB) / median(s.echo64) / 1e9,
    nodeCpuUsPerPing: median(s.nodeCpuUs),
    workerCpuUsPerPing: median(s.workerCpuUs),
  };
};
const base = summary(samples.baseline!);
const ours = summary(samples.this!);
const result = {
  benchmark: "bridge A/B",
  machine: { ...machine({}), loadAverageBefore: loadBefore },
  baseline: resolve(baselineDir),
  rounds,
  note: "rounds alternate A/B/B/A in one process; ratios this/baseline (latency: below 1 is faster; throughput: above 1 is faster)",
  baselineResult: base,
  thisResult: ours,
  ratios: {
    pingP50: ours.pingP50Us / base.pingP50Us,
    pingP99: ours.pingP99Us / base.pingP99Us,
    echo1MbThroughput: ours.echo1MbGbPerSecond / base.echo1MbGbPerSecond,
    echo64MbThroughput: ours.echo64MbGbPerSecond / base.echo64MbGbPerSecond,
    nodeCpuPerPing: ours.nodeCpuUsPerPing / base.nodeCpuUsPerPing,
    workerCpuPerPing: ours.workerCpuUsPerPing / base.workerCpuUsPerPing,
  },
};
const out = resolve(arg("--out") ?? join(PROJECT_ROOT, "bench", "results", "bridge.ab.json"));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result, null, 2));

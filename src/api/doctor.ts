/**
 * Environment diagnosis for `fpd doctor`: Node, the Python interpreter and its packages (probed
 * through pythonia, independently of the worker), CUDA, and a worker round trip.
 */
import { spawnSync } from "node:child_process";
import { Worker } from "../bridge/worker.js";
import { resolvePython } from "../bridge/python.js";
import { openPython } from "./python.js";

export type CheckStatus = "ok" | "warn" | "fail";
export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warn / fail. */
  hint?: string;
}
export interface DoctorReport {
  ok: boolean;
  python: string;
  pythonSource: string;
  checks: Check[];
  packages: Record<string, string | null>;
  cuda: { available: boolean; devices: { name: string; memoryGiB: number }[] } | null;
  worker: { startMs: number; pingP50Us: number; pingMaxUs: number; protocol: number } | null;
}

const PACKAGES: { module: string; dist: string; required: boolean; why: string }[] = [
  { module: "torch", dist: "torch", required: true, why: "the numerics" },
  { module: "numpy", dist: "numpy", required: true, why: "tensor (de)serialisation" },
  { module: "zmq", dist: "pyzmq", required: true, why: "the worker's socket" },
  { module: "msgpack", dist: "msgpack", required: true, why: "the wire format" },
  { module: "scipy", dist: "scipy", required: true, why: "reference solvers and statistics" },
  { module: "torchdiffeq", dist: "torchdiffeq", required: true, why: "ODE likelihood and sampling" },
  { module: "matplotlib", dist: "matplotlib", required: false, why: "report figures" },
  { module: "PIL", dist: "pillow", required: false, why: "sample grids" },
  { module: "safetensors", dist: "safetensors", required: false, why: "checkpoint export" },
];

function fixFor(python: string, source: string, dist?: string): string {
  if (source === ".venv" || source === ".conda" || source === "PATH") return "run `npm run setup` (it installs what is missing), or set FPD_PYTHON to an interpreter that has it";
  return dist ? `install it into that interpreter (${python} -m pip install ${dist}), or unset FPD_PYTHON to use the project's .venv` : "point FPD_PYTHON at a working interpreter, or unset it to use the project's .venv";
}

export async function diagnose(opts: { python?: string; skipWorker?: boolean } = {}): Promise<DoctorReport> {
  const checks: Check[] = [];
  const { python, source } = resolvePython(opts.python);
  const report: DoctorReport = { ok: false, python, pythonSource: source, checks, packages: {}, cuda: null, worker: null };

  const [major] = process.versions.node.split(".").map(Number);
  checks.push({ name: "node", status: major! >= 20 ? "ok" : "fail", detail: process.version, ...(major! < 20 ? { hint: "fpdiff needs Node 20 or newer" } : {}) });
  const npm = spawnSync("npm", ["--version"], { encoding: "utf8" });
  checks.push({ name: "npm", status: npm.status === 0 ? "ok" : "warn", detail: npm.status === 0 ? npm.stdout.trim() : "not found" });

  let bridge: Awaited<ReturnType<typeof openPython>> | undefined;
  try {
    bridge = await openPython(python);
  } catch (err) {
    checks.push({ name: "python", status: "fail", detail: `${python} (from ${source}): ${(err as Error).message}`, hint: fixFor(python, source) });
    return finish(report);
  }
  try {
    const sys = await bridge.python("sys");
    const version = String(await sys.version).split(" ")[0];
    const executable = String(await sys.executable);
    const [pmaj, pmin] = version!.split(".").map(Number);
    const good = pmaj === 3 && pmin! >= 10;
    checks.push({
      name: "python",
      status: good ? "ok" : "fail",
      detail: `${version} at ${executable} (from ${source})`,
      ...(good ? {} : { hint: "fpdiff needs Python 3.10 or newer" }),
    });
    const metadata = await bridge.python("importlib.metadata");
    for (const pkg of PACKAGES) {
      let version: string | null = null;
      let problem = "";
      try {
        await bridge.python(pkg.module);
        version = String(await metadata.version(pkg.dist)).trim();
      } catch (err) {
        problem = firstLine((err as Error).message);
      }
      report.packages[pkg.dist] = version;
      checks.push({
        name: pkg.dist,
        status: version ? "ok" : pkg.required ? "fail" : "warn",
        detail: version ?? `cannot import ${pkg.module} (${problem || "missing"}); needed for ${pkg.why}`,
        ...(version ? {} : { hint: fixFor(python, source, pkg.dist) }),
      });
    }
    if (report.packages.torch) {
      const torch = await bridge.python("torch");
      const available = Boolean(await torch.cuda.is_available());
      const devices: { name: string; memoryGiB: number }[] = [];
      if (available) {
        const n = Number(await torch.cuda.device_count());
        for (let i = 0; i < n; i++) {
          const props = await torch.cuda.get_device_properties(i);
          devices.push({ name: String(await props.name), memoryGiB: Number(await props.total_memory) / 2 ** 30 });
        }
      }
      report.cuda = { available, devices };
      checks.push({
        name: "cuda",
        status: "ok",
        detail: available ? devices.map((d, i) => `cuda:${i} ${d.name} (${d.memoryGiB.toFixed(0)} GiB)`).join(", ") : "not available (CPU only)",
      });
    }
  } catch (err) {
    checks.push({ name: "python", status: "fail", detail: `probing ${python} failed: ${firstLine((err as Error).message)}`, hint: fixFor(python, source) });
  } finally {
    bridge.close();
  }

  if (!opts.skipWorker && checks.every((c) => c.status !== "fail")) {
    const t0 = performance.now();
    let worker: Worker | undefined;
    try {
      worker = await Worker.start({ python });
      const startMs = performance.now() - t0;
      const lat: number[] = [];
      for (let i = 0; i < 200; i++) {
        const s = performance.now();
        await worker.request("ping", {});
        lat.push((performance.now() - s) * 1000);
      }
      lat.sort((a, b) => a - b);
      report.worker = { startMs, pingP50Us: lat[100]!, pingMaxUs: lat[lat.length - 1]!, protocol: worker.info.protocol };
      checks.push({ name: "worker", status: "ok", detail: `started in ${startMs.toFixed(0)} ms; ping p50 ${lat[100]!.toFixed(0)} µs over 200 round trips` });
    } catch (err) {
      checks.push({ name: "worker", status: "fail", detail: firstLine((err as Error).message), hint: "see the message above; `npm run setup` repairs a broken environment" });
    } finally {
      await worker?.close();
    }
  }
  return finish(report);
}

function finish(report: DoctorReport): DoctorReport {
  report.ok = report.checks.every((c) => c.status !== "fail");
  return report;
}

function firstLine(s: string): string {
  const lines = s.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /Error|No module/.test(l)) ?? lines[0] ?? s;
}

/**
 * pythonia, for the two jobs it has beside the data plane: `fpd doctor` probes the Python
 * environment with it independently of the worker (so it can say why a worker cannot start), and
 * ablation scripts may use it as an escape hatch for ad-hoc Python (plotting, a quick scipy call).
 * Tensors and training never go through it: that is the worker's wire.
 *
 * pythonia starts one interpreter per Node process, chosen from PYTHON_BIN when it is first
 * imported; `openPython()` sets that up for fpdiff's interpreter and fpdiff's package path.
 */
import { spawnSync } from "node:child_process";
import { delimiter } from "node:path";
import { resolvePython } from "../bridge/python.js";
import { PY_ROOT } from "../paths.js";

type Pythonia = typeof import("pythonia");
// pythonia's own typings declare its tagged templates as taking arrays; these are what they are.
type PyTag = (strings: TemplateStringsArray, ...values: unknown[]) => Promise<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
export type PyTemplate = PyTag & { exec: PyTag };
let loaded: { mod: Pythonia; python: string } | undefined;

export class PythonUnavailableError extends Error {
  constructor(python: string, why: string) {
    super(`cannot run ${python}: ${why}`);
    this.name = "PythonUnavailableError";
  }
}

/**
 * The pythonia bridge on fpdiff's interpreter (FPD_PYTHON, .venv, python3, or `python`).
 * Call `close()` (or `python.exit()`) when done so Node can exit.
 */
export async function openPython(python?: string): Promise<{ python: Pythonia["python"]; py: PyTemplate; interpreter: string; close: () => void }> {
  const interpreter = resolvePython(python).python;
  if (loaded && loaded.python !== interpreter) {
    throw new Error(`pythonia already runs ${loaded.python} in this process; it cannot switch to ${interpreter}`);
  }
  if (!loaded) {
    // pythonia crashes the Node process on an interpreter it cannot spawn: check first.
    const probe = spawnSync(interpreter, ["-c", "import sys; print(sys.version_info[0])"], { encoding: "utf8", timeout: 30_000 });
    if (probe.error) throw new PythonUnavailableError(interpreter, probe.error.message);
    if (probe.status !== 0) throw new PythonUnavailableError(interpreter, (probe.stderr || `exit code ${probe.status}`).trim());
    const saved = { bin: process.env.PYTHON_BIN, path: process.env.PYTHONPATH };
    process.env.PYTHON_BIN = interpreter;
    process.env.PYTHONPATH = [PY_ROOT, saved.path].filter(Boolean).join(delimiter);
    try {
      loaded = { mod: await import("pythonia"), python: interpreter };
    } finally {
      restore("PYTHON_BIN", saved.bin);
      restore("PYTHONPATH", saved.path);
    }
  }
  const mod = loaded.mod;
  return { python: mod.python, py: mod.py as unknown as PyTemplate, interpreter, close: () => mod.python.exit() };
}

function restore(key: string, value: string | undefined): void {
  if (value === undefined) delete process.env[key];
  else process.env[key] = value;
}

/** Which Python runs the worker: FPD_PYTHON, else the project's .venv, else python3 on PATH. */
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { PROJECT_ROOT, PY_ROOT } from "../paths.js";

export interface PythonChoice {
  python: string;
  source: "option" | "FPD_PYTHON" | ".venv" | ".conda" | "PATH";
}

export function resolvePython(explicit?: string, env: NodeJS.ProcessEnv = process.env): PythonChoice {
  if (explicit) return { python: explicit, source: "option" };
  if (env.FPD_PYTHON) return { python: env.FPD_PYTHON, source: "FPD_PYTHON" };
  for (const source of [".venv", ".conda"] as const) {
    const python = join(PROJECT_ROOT, source, "bin", "python");
    if (existsSync(python)) return { python, source };
  }
  return { python: "python3", source: "PATH" };
}

/**
 * The environment the worker runs in: fpdiff's Python package on PYTHONPATH, unbuffered output,
 * glibc told to keep freed memory, because page-faulting a fresh mapping for every large message
 * costs more than the copy itself (64 MB echo: 1.2 s → 0.1 s on the reference machine), and
 * OpenMP threads that sleep rather than spin when idle: with spinning threads a toy training step
 * ran 10× slower whenever anything else wanted the CPU (measured on 2 cores, batch 1000).
 */
export function workerEnv(extra: NodeJS.ProcessEnv = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    MALLOC_MMAP_THRESHOLD_: "4294967296",
    MALLOC_TRIM_THRESHOLD_: "8589934592",
    MALLOC_TOP_PAD_: "268435456",
    OMP_WAIT_POLICY: "PASSIVE",
    ...base,
    ...extra,
    PYTHONUNBUFFERED: "1",
  };
  env.PYTHONPATH = [PY_ROOT, env.PYTHONPATH].filter(Boolean).join(delimiter);
  return env;
}

#!/usr/bin/env node
// Run the Python that fpdiff's worker would use (FPD_PYTHON, .venv, .conda, python3) with fpdiff's
// package on PYTHONPATH: `node scripts/python.mjs -m pytest py/tests`.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
export function projectPython() {
  if (process.env.FPD_PYTHON) return process.env.FPD_PYTHON;
  for (const env of [".venv", ".conda"]) {
    const p = join(ROOT, env, "bin", "python");
    if (existsSync(p)) return p;
  }
  return "python3";
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const env = { ...process.env, PYTHONPATH: [join(ROOT, "py"), process.env.PYTHONPATH].filter(Boolean).join(delimiter) };
  const r = spawnSync(projectPython(), process.argv.slice(2), { stdio: "inherit", cwd: ROOT, env });
  process.exit(r.status ?? 1);
}

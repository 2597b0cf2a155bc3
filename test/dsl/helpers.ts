/** Shared by the DSL tests: the cases fixture, path edits, and a direct run of fpdiff.config. */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { resolvePython, workerEnv } from "../../src/bridge/python.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const FIXTURES = join(ROOT, "test", "dsl", "fixtures");
export const PRESETS_FIXTURE = join(FIXTURES, "presets.json");

export type Edit = [string, unknown];
/** `python`: "schema" (the generated schema refuses it at the wire), a guard function, or "ts". */
export interface InvalidCase { name: string; base: string; edits: Edit[]; path: string; python: string }
export interface WarningCase { name: string; base: string; edits: Edit[]; paths: string[] }
export const cases = JSON.parse(readFileSync(join(FIXTURES, "cases.json"), "utf8")) as {
  invalid: InvalidCase[];
  warnings: WarningCase[];
};

/** `a.b[1].c` → ["a", "b", 1, "c"]. */
export function splitPath(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const token of path.split(".")) {
    const m = /^([^[]*)((?:\[\d+\])*)$/.exec(token)!;
    if (m[1]) out.push(m[1]);
    for (const i of m[2]!.matchAll(/\[(\d+)\]/g)) out.push(Number(i[1]));
  }
  return out;
}

/** Applies [path, value] edits to a deep copy (value {$delete: true} removes the key). */
export function applyEdits<T>(base: T, edits: Edit[]): T {
  const root = structuredClone(base) as Record<string | number, unknown>;
  for (const [path, value] of edits) {
    const segs = splitPath(path);
    let node = root;
    for (const s of segs.slice(0, -1)) node = node[s] as Record<string | number, unknown>;
    const last = segs[segs.length - 1]!;
    if (value && typeof value === "object" && "$delete" in value) delete node[last];
    else node[last] = value;
  }
  return root as T;
}

export interface PyAnswer {
  ok: boolean;
  experiment?: Record<string, unknown>;
  errors?: Array<{ path: string; message: string }>;
}

/** Runs `python -m fpdiff.config` on a list of raw experiments (one interpreter for all). */
export function pythonCheck(inputs: unknown[]): PyAnswer[] {
  const r = spawnSync(resolvePython().python, ["-m", "fpdiff.config"], {
    cwd: ROOT,
    env: workerEnv(),
    input: JSON.stringify(inputs),
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`python -m fpdiff.config failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as PyAnswer[];
}

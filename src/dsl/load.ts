/**
 * Loading an experiment by reference: a preset name (`ve/cifar10_ncsnpp_continuous`), a `.ts` /
 * `.mts` / `.js` / `.mjs` file whose default export is an experiment (or a function returning one),
 * or a `.json` file. `--set` overrides are applied afterwards and the result validated.
 *
 * The preset registry is imported lazily: the presets are written with the DSL, so a static import
 * here would make a cycle.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname, resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { ConfigError } from "./errors.js";
import { experiment, lint, type Experiment, type ExperimentInput } from "./experiment.js";
import { applyOverrides } from "./overrides.js";
import type { ConfigIssue } from "./errors.js";

const MODULE_EXTS = new Set([".ts", ".mts", ".cts", ".js", ".mjs", ".cjs"]);

export interface LoadOptions {
  /** `--set path=value` flags, applied in order. */
  set?: readonly string[];
  /** Base directory for relative file paths (default: the process's cwd). */
  cwd?: string;
}

export interface Loaded {
  experiment: Experiment;
  /** Where it came from: a preset name or an absolute file path. */
  source: { kind: "preset" | "file"; ref: string };
  warnings: ConfigIssue[];
}

/** The registry's names and descriptions (lazy import of `configs/`). */
export async function listPresets(): Promise<Array<{ name: string; description: string }>> {
  const { presets } = await import("../../configs/index.js");
  return presets.map((p) => ({ name: p.name, description: p.description }));
}

function looksLikeFile(ref: string): boolean {
  const ext = extname(ref);
  return ext === ".json" || MODULE_EXTS.has(ext) || ref.startsWith(".") || ref.startsWith("/");
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

async function loadFile(abs: string): Promise<unknown> {
  const ext = extname(abs);
  if (ext === ".json") {
    const text = await readFile(abs, "utf8");
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ConfigError([{ path: "", message: `${abs} is not valid JSON: ${(err as Error).message}` }]);
    }
  }
  if (!MODULE_EXTS.has(ext)) {
    throw new ConfigError([{ path: "", message: `${abs}: a config file must be .ts, .mts, .js, .mjs or .json` }]);
  }
  return withTimeout(abs, evaluateModule(abs, ext));
}

/** Import a config module and settle its default export (a value, a function, or a promise of either). */
async function evaluateModule(abs: string, ext: string): Promise<unknown> {
  const url = pathToFileURL(abs).href;
  let mod: { default?: unknown };
  try {
    mod = (ext === ".ts" || ext === ".mts" || ext === ".cts"
      ? await (await import("tsx/esm/api")).tsImport(url, import.meta.url)
      : await import(url)) as { default?: unknown };
  } catch (err) {
    throw new ConfigError([{ path: "", message: `${abs} failed to load: ${describeThrown(err)}` }]);
  }
  let value = defaultExport(mod as Record<string, unknown>);
  if (value === undefined) {
    throw new ConfigError([{ path: "", message: `${abs} has no default export; export default experiment({...})` }]);
  }
  try {
    if (typeof value === "function") value = await (value as () => unknown)();
    else value = await value; // a promise (or any thenable) of an experiment
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError([{ path: "", message: `${abs}: its default export failed: ${describeThrown(err)}` }]);
  }
  return value;
}

function describeThrown(err: unknown): string {
  if (err instanceof Error) return `${err.name === "Error" ? "" : `${err.name}: `}${err.message}`;
  return String(err);
}

/** How long a config module may take to give its experiment (FPD_CONFIG_TIMEOUT_MS, default 60 s). */
function configTimeoutMs(): number {
  const v = Number(process.env.FPD_CONFIG_TIMEOUT_MS);
  return Number.isFinite(v) && v > 0 ? v : 60_000;
}

/**
 * A module whose import or default export never settles would otherwise leave Node with an
 * empty event loop (exit 13, no message); the timer keeps it alive until it can say why.
 */
function withTimeout<T>(abs: string, p: Promise<T>): Promise<T> {
  const ms = configTimeoutMs();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ConfigError([{ path: "", message: `${abs} did not produce an experiment within ${ms / 1000} s (its import or its default export's promise never settled)` }])),
      ms,
    );
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The default export of a module namespace. A `.ts` file outside an ESM package is run as
 * CommonJS, so its namespace's `default` is the whole `module.exports` (holding `default` and the
 * named exports); unwrap that.
 */
function defaultExport(ns: Record<string, unknown>): unknown {
  const d = ns.default;
  if (d === null || typeof d !== "object") return d;
  const exportsObject = d as Record<string, unknown>;
  if ("default" in exportsObject) return exportsObject.default;
  const named = Object.keys(ns).filter((k) => k !== "default");
  const isExportsObject = named.length > 0 && named.every((k) => exportsObject[k] === ns[k]);
  if (isExportsObject || Object.keys(exportsObject).length === 0) return undefined;
  return d;
}

/** Loads a preset or a file, applies overrides, validates; throws ConfigError on any problem. */
export async function loadExperiment(ref: string, opts: LoadOptions = {}): Promise<Loaded> {
  const { getPreset, presetNames } = await import("../../configs/index.js");
  const preset = getPreset(ref);
  let raw: unknown;
  let source: Loaded["source"];
  if (preset) {
    raw = preset.experiment;
    source = { kind: "preset", ref };
  } else {
    const abs = resolvePath(opts.cwd ?? process.cwd(), ref);
    if (!existsSync(abs)) {
      if (looksLikeFile(ref)) throw new ConfigError([{ path: "", message: `no such file: ${abs}` }]);
      const names = presetNames();
      const close = names
        .map((n) => ({ n, d: distance(ref, n) }))
        .sort((a, b) => a.d - b.d)
        .slice(0, 3)
        .map((x) => x.n);
      throw new ConfigError([
        { path: "", message: `unknown preset ${JSON.stringify(ref)} (and no such file); did you mean ${close.join(", ")}? \`fpd config list\` shows all` },
      ]);
    }
    raw = await loadFile(abs);
    source = { kind: "file", ref: abs };
  }
  const exp = opts.set && opts.set.length > 0 ? applyOverrides(raw as ExperimentInput, opts.set) : experiment(raw as ExperimentInput);
  return { experiment: exp, source, warnings: lint(exp) };
}

/**
 * `--set path=value` overrides. Paths use the experiment's camelCase names with dots and indices:
 * `model.nf=8`, `loss.terms[1].alpha=0.3` (or `loss.terms.1.alpha=0.3`), `eval.bpd.repeats=5`.
 *
 * Values are read according to what is at the path now: numbers, booleans (`true` / `false`),
 * lists (`[1,2,2]` or `1,2,2`), strings as written; JSON (`{...}`, `[...]`, `"..."`) is always
 * accepted. `null` removes the key (the field returns to its default, or to "absent"). Setting a
 * discriminator (`sde.kind=vp`, `model.kind=ddpmpp`, `sampling.method=ode`,
 * `loss.terms[0].kind=...`) to a new value replaces that object by the new kind's defaults.
 * The result is validated as a whole; an error names the path, the value and what was expected.
 */
import { ConfigError, formatPath, type ConfigIssue, type PathSegment } from "./errors.js";
import { experiment, type Experiment, type ExperimentInput } from "./experiment.js";

/** One parsed `--set` flag. */
export interface Override {
  path: PathSegment[];
  /** The path as written, normalised to `a.b[1].c`. */
  pathText: string;
  /** The value text as written. */
  raw: string;
}

const DISCRIMINATORS = new Set(["kind", "method"]);
/** Names that reach an object's prototype rather than a field of the experiment: never a path. */
const FORBIDDEN = new Set(["__proto__", "prototype", "constructor"]);

function overrideError(flag: string, message: string, path = ""): ConfigError {
  return new ConfigError([{ path, message: `${message} (--set ${flag})` }]);
}

/** Parses `a.b[1].c=value`. */
export function parseOverride(flag: string): Override {
  const eq = flag.indexOf("=");
  if (eq <= 0) throw overrideError(flag, "expected path=value, e.g. model.nf=64");
  const pathText = flag.slice(0, eq).trim();
  const raw = flag.slice(eq + 1);
  const path: PathSegment[] = [];
  for (const token of pathText.split(".")) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)?((?:\[\d+\])*)$/.exec(token);
    if (!m || (!m[1] && !m[2])) {
      if (/^\d+$/.test(token)) {
        path.push(Number(token));
        continue;
      }
      throw overrideError(flag, `bad path segment ${JSON.stringify(token)}: use names and [index], e.g. loss.terms[1].alpha`);
    }
    if (m[1] && FORBIDDEN.has(m[1])) {
      throw overrideError(flag, `path segment ${JSON.stringify(m[1])} is not a field of the experiment (it would reach an object's prototype)`, formatPath(path));
    }
    if (m[1]) path.push(m[1]);
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) path.push(Number(idx[1]));
  }
  if (path.length === 0) throw overrideError(flag, "empty path");
  return { path, pathText: formatPath(path), raw };
}

function scalar(text: string): unknown {
  const t = text.trim();
  if (t === "true") return true;
  if (t === "false") return false;
  if (t === "null") return null;
  if (t !== "" && Number.isFinite(Number(t))) return Number(t);
  return t;
}

function looseList(text: string): unknown[] {
  let t = text.trim();
  if (t.startsWith("[") && t.endsWith("]")) t = t.slice(1, -1);
  if (t.trim() === "") return [];
  return t.split(",").map(scalar);
}

/** Reads a value text, guided by the value currently at the path (`undefined`: nothing there). */
export function parseValue(raw: string, current: unknown): unknown {
  const t = raw.trim();
  if (t === "null") return null;
  if (t.startsWith("{") || t.startsWith("[") || t.startsWith('"')) {
    try {
      // a "__proto__" key would give whatever copies the value later a new prototype: drop it
      return JSON.parse(t, (k, v: unknown) => (k === "__proto__" ? undefined : v));
    } catch {
      if (t.startsWith("[")) return looseList(t);
      return raw;
    }
  }
  if (Array.isArray(current)) return looseList(t);
  switch (typeof current) {
    case "string":
      return raw;
    case "number":
      return t !== "" && Number.isFinite(Number(t)) ? Number(t) : raw;
    case "boolean":
      return t === "true" ? true : t === "false" ? false : raw;
    case "object":
      return raw; // e.g. dt: {finiteDifference} ← "autodiff"
    default:
      return t.includes(",") ? looseList(t) : scalar(t);
  }
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/** Applies one override to a JSON object in place; returns the value it set (null: removed). */
function applyOne(root: Record<string, unknown>, o: Override, flag: string): unknown {
  let node: unknown = root;
  for (let i = 0; i < o.path.length - 1; i++) {
    const seg = o.path[i]!;
    const here = formatPath(o.path.slice(0, i));
    if (Array.isArray(node)) {
      if (typeof seg !== "number") throw overrideError(flag, `${here} is a list: index it with [n]`, here);
      if (seg >= node.length) throw overrideError(flag, `${here} has ${node.length} entries, no [${seg}]`, here);
    } else if (node === null || typeof node !== "object") {
      throw overrideError(flag, `${here} is ${describe(node)}, not an object`, here);
    } else if (typeof seg === "number") {
      throw overrideError(flag, `${here || "the experiment"} is an object, not a list`, here);
    }
    const container = node as Record<string | number, unknown>;
    const key = seg as string | number;
    const next = Object.hasOwn(container, key) ? container[key] : undefined;
    if (next === undefined || next === null) container[key] = typeof o.path[i + 1] === "number" ? [] : {};
    node = container[key];
  }
  const last = o.path[o.path.length - 1]!;
  const parentPath = formatPath(o.path.slice(0, -1));
  if (Array.isArray(node)) {
    if (typeof last !== "number") throw overrideError(flag, `${parentPath} is a list: index it with [n]`, parentPath);
    if (last > node.length) throw overrideError(flag, `${parentPath} has ${node.length} entries; [${last}] would leave a gap`, parentPath);
  } else if (node === null || typeof node !== "object") {
    throw overrideError(flag, `${parentPath} is ${describe(node)}, not an object`, parentPath);
  } else if (typeof last === "number") {
    throw overrideError(flag, `${parentPath || "the experiment"} is an object, not a list`, parentPath);
  }
  const container = node as Record<string | number, unknown>;
  const key = last as string | number;
  const current = Object.hasOwn(container, key) ? container[key] : undefined;
  const value = parseValue(o.raw, current);
  if (value === null) {
    if (Array.isArray(container)) container.splice(key as number, 1);
    else delete container[key];
    return null;
  }
  if (typeof key === "string" && DISCRIMINATORS.has(key) && current !== undefined && value !== current) {
    // A new kind: start that object afresh from the new kind's defaults.
    for (const k of Object.keys(container)) delete container[k];
  }
  container[key] = value;
  return value;
}

function relatesTo(issuePath: string, o: Override): boolean {
  const p = o.pathText;
  return issuePath === p || issuePath.startsWith(`${p}.`) || issuePath.startsWith(`${p}[`) || p.startsWith(`${issuePath}.`) || p.startsWith(`${issuePath}[`);
}

/**
 * Applies `--set` flags to an experiment (or experiment input) and validates the result. The input
 * is not modified. Problems caused by an override name the flag and the value.
 */
export function applyOverrides(base: Experiment | ExperimentInput, flags: readonly string[]): Experiment {
  const parsed = flags.map((f) => ({ flag: f, o: parseOverride(f) }));
  const root = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
  for (const p of parsed) applyOne(root, p.o, p.flag);
  try {
    return experiment(root as ExperimentInput);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const issues: ConfigIssue[] = err.issues.map((issue) => {
      const culprit = [...parsed].reverse().find(({ o }) => relatesTo(issue.path, o));
      return culprit
        ? { path: issue.path, message: `${issue.message} (from --set ${culprit.flag})` }
        : issue;
    });
    throw new ConfigError(issues, "after --set");
  }
}

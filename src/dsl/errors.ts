/**
 * Errors of the DSL: every problem names the field it is about, as a path in the experiment's
 * camelCase wire form (`loss.terms[1].alpha`) — the same form the Python side uses.
 */
import type { z } from "zod";

export type PathSegment = string | number | symbol;

/** One problem found in a config. `path` is "" for the whole object. */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** Formats a path array as `a.b[1].c`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out === "" ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** Joins a prefix path and a relative path (`loss` + `terms[1]` → `loss.terms[1]`). */
export function joinPath(prefix: string, rest: string): string {
  if (prefix === "") return rest;
  if (rest === "") return prefix;
  return rest.startsWith("[") ? `${prefix}${rest}` : `${prefix}.${rest}`;
}

/** Converts zod issues to config issues; unknown keys get one issue each, at their own path. */
export function zodIssues(error: z.ZodError, prefix = ""): ConfigIssue[] {
  return issuesOf(error.issues, prefix);
}

function issuesOf(issues: readonly z.core.$ZodIssue[], prefix: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of issues) {
    const base = formatPath(issue.path as PathSegment[]);
    if (issue.code === "invalid_union" && issue.errors.length > 0) {
      // A union whose value matched a branch's shape (an object) reports that branch's own
      // problems, which point at the offending field; otherwise the union's message stands.
      const deep = issue.errors.find((branch) => branch.some((i) => i.path.length > 0));
      if (deep) {
        out.push(...issuesOf(deep, joinPath(prefix, base)));
        continue;
      }
    }
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        out.push({ path: joinPath(prefix, joinPath(base, key)), message: "unknown key" });
      }
    } else {
      out.push({ path: joinPath(prefix, base), message: issue.message });
    }
  }
  return out;
}

/** Thrown by builders, `experiment()`, overrides and loading when a config is invalid. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  /** Path of the first issue (convenience for callers that report one). */
  readonly path: string;

  constructor(issues: ConfigIssue[], context?: string) {
    const lines = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message));
    const head = context ? `${context}: ` : "";
    super(
      issues.length === 1
        ? `${head}${lines[0]}`
        : `${head}${issues.length} problems\n  ${lines.join("\n  ")}`,
    );
    this.name = "ConfigError";
    this.issues = issues;
    this.path = issues[0]?.path ?? "";
  }
}

/** Parses `value` with `schema`, throwing a ConfigError whose paths start at `prefix`. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  prefix = "",
  context?: string,
): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ConfigError(zodIssues(r.error, prefix), context);
  return r.data;
}

/**
 * Ablations written in TypeScript: a grid, a function from a grid point to a row of numbers, and
 * how to plot the table. `fpd ablate <script.ts>` runs the script's default export with
 * `runAblation`, which writes results.md (table), results.csv and results.png, and resumes a
 * half-finished ablation from its results file.
 *
 *     export default defineAblation({
 *       name: "fpe-weight",
 *       params: { steps: 400 },
 *       grid: { alpha: [0, 0.15], m: [1, 2] },
 *       async run(point, ctx) { ...; return { nll }; },
 *       plot: { x: "alpha", y: "nll", series: ["m"] },
 *     });
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { atomicWrite } from "./runs.js";
import type { Session } from "./session.js";
import { sweep, type Grid, type Point, type SweepOptions } from "./sweep.js";
import { toCsv, toMarkdown, type Row } from "./table.js";

export type Params = Record<string, string | number | boolean>;

export interface AblationContext<P extends Params> {
  session: Session;
  /** Merged defaults and `--param` values, typed by the defaults. */
  params: P;
  /** The ablation's output directory; each point may keep its runs under it. */
  outDir: string;
  /** A directory name unique to the point (for run directories). */
  pointDir: string;
  signal: AbortSignal;
  log: (message: string) => void;
}

export interface AblationPlot<G extends Grid, R extends Row> {
  x: keyof G & string;
  y: keyof R & string;
  /** Grid keys whose values make separate lines (default: every other grid key). */
  series?: (keyof G & string)[];
  /** Optional error bars: a column of R. */
  yerr?: keyof R & string;
  logx?: boolean;
  logy?: boolean;
  title?: string;
  /** A dashed reference line, e.g. the entropy floor. */
  hline?: { y: number; label?: string } | ((rows: (Point<G> & R)[]) => { y: number; label?: string } | undefined);
}

export interface Ablation<G extends Grid, R extends Row, P extends Params> {
  name: string;
  description: string;
  params: P;
  grid: G | ((params: P) => G);
  run: (point: Point<G>, ctx: AblationContext<P>) => Promise<R>;
  /** A line plot of one result column against one grid key, or a function that draws its own PNG. */
  plot?: AblationPlot<G, R> | ((rows: (Point<G> & R)[], ctx: { session: Session; path: string; params: P }) => Promise<void>);
  /** Columns of the table, in order (default: grid keys then result keys). */
  columns?: string[];
}

export function defineAblation<G extends Grid, R extends Row, P extends Params>(a: Ablation<G, R, P>): Ablation<G, R, P> {
  return a;
}

export interface AblationOutcome {
  name: string;
  rows: Row[];
  markdown: string;
  csv: string;
  plot: string | null;
  outDir: string;
}

/** Typed `--param key=value` parsing against the ablation's defaults. */
export function mergeParams<P extends Params>(defaults: P, given: Record<string, string>): P {
  const out: Params = { ...defaults };
  for (const [k, raw] of Object.entries(given)) {
    if (!Object.hasOwn(defaults, k)) throw new Error(`--param ${k}: unknown; this ablation takes ${Object.keys(defaults).join(", ") || "no params"}`);
    const d = defaults[k];
    if (typeof d === "number") {
      const v = Number(raw);
      if (!Number.isFinite(v)) throw new Error(`--param ${k}=${raw}: expected a number`);
      out[k] = v;
    } else if (typeof d === "boolean") {
      if (raw !== "true" && raw !== "false") throw new Error(`--param ${k}=${raw}: expected true or false`);
      out[k] = raw === "true";
    } else out[k] = raw;
  }
  return out as P;
}

function slug(point: Record<string, unknown>): string {
  return Object.entries(point)
    .map(([k, v]) => `${k}-${String(v)}`)
    .join("_")
    .replace(/[^A-Za-z0-9._-]+/g, "_");
}

export async function runAblation<G extends Grid, R extends Row, P extends Params>(
  ablation: Ablation<G, R, P>,
  opts: { outDir: string; params?: Record<string, string>; session?: Session; signal?: AbortSignal; log?: (m: string) => void } & Pick<SweepOptions, "parallel" | "device" | "python" | "onPoint">,
): Promise<AblationOutcome> {
  const outDir = resolve(opts.outDir);
  mkdirSync(outDir, { recursive: true });
  const params = mergeParams(ablation.params, opts.params ?? {});
  const grid = typeof ablation.grid === "function" ? ablation.grid(params) : ablation.grid;
  const log = opts.log ?? (() => {});
  const rows = await sweep(
    grid,
    (point, ctx) =>
      ablation.run(point, { session: ctx.session, params, outDir, pointDir: join(outDir, "points", slug(point)), signal: ctx.signal, log }),
    {
      resultsFile: join(outDir, "results.jsonl"),
      ...(opts.session ? { session: opts.session } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.parallel ? { parallel: opts.parallel } : {}),
      ...(opts.device ? { device: opts.device } : {}),
      ...(opts.python ? { python: opts.python } : {}),
      ...(opts.onPoint ? { onPoint: opts.onPoint } : {}),
    },
  );
  const columns = ablation.columns ?? [...new Set([...Object.keys(grid), ...rows.flatMap((r) => Object.keys(r))])];
  const table = rows as unknown as Row[];
  const md = join(outDir, "results.md");
  const paramLine = Object.entries(params).map(([k, v]) => `${k}=${String(v)}`).join(", ");
  atomicWrite(md, [`# ${ablation.name}`, "", ablation.description, "", paramLine ? `Parameters: ${paramLine}.` : "", "", toMarkdown(table, { columns }), "", ablation.plot ? "![results.png](results.png)\n" : ""].join("\n"));
  const csv = join(outDir, "results.csv");
  atomicWrite(csv, toCsv(table, columns));
  let plot: string | null = null;
  if (ablation.plot) plot = await drawPlot(ablation, grid, rows, outDir, params, opts.session);
  return { name: ablation.name, rows: table, markdown: md, csv, plot, outDir };
}

async function drawPlot<G extends Grid, R extends Row, P extends Params>(
  ablation: Ablation<G, R, P>,
  grid: G,
  rows: (Point<G> & R)[],
  outDir: string,
  params: P,
  session: Session | undefined,
): Promise<string> {
  const path = join(outDir, "results.png");
  const { Session } = await import("./session.js");
  const s = session ?? (await Session.open());
  try {
    const spec = ablation.plot!;
    if (typeof spec === "function") await spec(rows, { session: s, path, params });
    else await s.request("plot.lines", lineSpec(ablation.name, spec, grid, rows, path));
  } finally {
    if (!session) await s.close();
  }
  return path;
}

function lineSpec<G extends Grid, R extends Row>(name: string, spec: AblationPlot<G, R>, grid: G, rows: (Point<G> & R)[], path: string) {
  const seriesKeys = spec.series ?? Object.keys(grid).filter((k) => k !== spec.x);
  const groups = new Map<string, (Point<G> & R)[]>();
  for (const r of rows) {
    const key = seriesKeys.map((k) => `${k}=${String(r[k])}`).join(", ");
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const num = (v: unknown) => (typeof v === "number" ? v : typeof v === "boolean" ? Number(v) : Number(v));
  const series = [...groups.entries()].map(([label, rs]) => {
    const sorted = [...rs].sort((a, b) => num(a[spec.x]) - num(b[spec.x]));
    return {
      ...(label ? { label } : {}),
      x: sorted.map((r) => num(r[spec.x])),
      y: sorted.map((r) => num(r[spec.y])),
      ...(spec.yerr ? { yerr: sorted.map((r) => num(r[spec.yerr!])) } : {}),
    };
  });
  const hline = typeof spec.hline === "function" ? spec.hline(rows) : spec.hline;
  return {
    path,
    series,
    title: spec.title ?? name,
    xlabel: spec.x,
    ylabel: spec.y,
    ...(spec.logx ? { logx: true } : {}),
    ...(spec.logy ? { logy: true } : {}),
    ...(hline ? { hline } : {}),
  };
}

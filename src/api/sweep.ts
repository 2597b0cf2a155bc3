/**
 * `sweep(grid, fn)`: run `fn` at every point of a grid, on one session (default) or on `parallel`
 * sessions (each its own worker), collecting a typed table. With `resultsFile`, every finished
 * point is appended to a JSONL file as it completes, and a later call with the same file skips
 * the points already there — an interrupted sweep resumes where it stopped.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { Session, type SessionOptions } from "./session.js";

export type Grid = Record<string, readonly (string | number | boolean)[]>;
export type Point<G extends Grid> = { [K in keyof G]: G[K][number] };
export type SweepRow<G extends Grid, R> = Point<G> & R;

export interface SweepContext {
  session: Session;
  index: number;
  total: number;
  signal: AbortSignal;
}

export interface SweepOptions extends SessionOptions {
  /** JSONL file of finished points; existing entries are reused (resume). */
  resultsFile?: string;
  /** Number of workers to run points on at once (default 1). */
  parallel?: number;
  signal?: AbortSignal;
  /** Called after each point finishes (or is found done in the results file). */
  onPoint?: (info: { index: number; total: number; point: Record<string, unknown>; resumed: boolean }) => void;
  /** Reuse this session instead of opening one (sequential sweeps only). */
  session?: Session;
}

/** Every combination of the grid's values, in row-major order of its keys. */
export function gridPoints<G extends Grid>(grid: G): Point<G>[] {
  let points: Record<string, unknown>[] = [{}];
  for (const [key, values] of Object.entries(grid)) {
    if (values.length === 0) throw new Error(`sweep: grid axis ${key} has no values`);
    points = points.flatMap((p) => values.map((v) => ({ ...p, [key]: v })));
  }
  return points as Point<G>[];
}

/** The identity of a point in the results file (key order independent). */
export function pointKey(point: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(point).sort().map((k) => [k, point[k]]));
}

interface Line {
  key: string;
  point: Record<string, unknown>;
  result: Record<string, unknown>;
  finished: string;
}

function readDone(file: string | undefined): Map<string, Line> {
  const done = new Map<string, Line>();
  if (!file || !existsSync(file)) return done;
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    if (!raw.trim()) continue;
    try {
      const line = JSON.parse(raw) as Line;
      done.set(line.key, line);
    } catch {
      // a line cut short by a crash mid-write: that point simply runs again
    }
  }
  return done;
}

export async function sweep<G extends Grid, R extends Record<string, unknown>>(
  grid: G,
  fn: (point: Point<G>, ctx: SweepContext) => Promise<R>,
  opts: SweepOptions = {},
): Promise<SweepRow<G, R>[]> {
  const points = gridPoints(grid);
  const done = readDone(opts.resultsFile);
  if (opts.resultsFile) mkdirSync(dirname(opts.resultsFile), { recursive: true });
  const rows: (SweepRow<G, R> | undefined)[] = points.map((p) => {
    const line = done.get(pointKey(p));
    return line ? ({ ...p, ...(line.result as R) } as SweepRow<G, R>) : undefined;
  });
  rows.forEach((r, i) => r && opts.onPoint?.({ index: i, total: points.length, point: points[i]!, resumed: true }));
  const todo = points.map((_, i) => i).filter((i) => rows[i] === undefined);
  const parallel = Math.max(1, Math.min(opts.parallel ?? 1, todo.length || 1));
  if (opts.session && parallel > 1) throw new Error("sweep: a shared session cannot run points in parallel");

  const controller = new AbortController();
  const abort = () => controller.abort();
  opts.signal?.addEventListener("abort", abort, { once: true });
  // Every lane's worker is started before any point runs: a lane whose worker is still importing
  // torch would otherwise find the work already taken, and `parallel` would not be parallel.
  const opened = opts.session ? [opts.session] : await Promise.allSettled(Array.from({ length: parallel }, () => Session.open(opts)));
  const sessions = opened.map((o) => (o instanceof Session ? o : o.status === "fulfilled" ? o.value : undefined));
  const startFailure = opened.find((o): o is PromiseRejectedResult => !(o instanceof Session) && o.status === "rejected");
  if (startFailure) {
    await Promise.all(sessions.map((s) => (s && !opts.session ? s.close() : undefined)));
    opts.signal?.removeEventListener("abort", abort);
    throw startFailure.reason;
  }
  let next = 0;
  const lane = async (session: Session) => {
    try {
      while (next < todo.length && !controller.signal.aborted) {
        const i = todo[next++]!;
        const point = points[i]!;
        const result = await fn(point, { session, index: i, total: points.length, signal: controller.signal });
        rows[i] = { ...point, ...result } as SweepRow<G, R>;
        if (opts.resultsFile) {
          const line: Line = { key: pointKey(point), point, result, finished: new Date().toISOString() };
          appendFileSync(opts.resultsFile, JSON.stringify(line) + "\n");
        }
        opts.onPoint?.({ index: i, total: points.length, point, resumed: false });
      }
    } catch (err) {
      controller.abort(); // one failing point stops the others: the file keeps what finished
      throw err;
    } finally {
      if (!opts.session) await session.close();
      opts.signal?.removeEventListener("abort", abort);
    }
  };
  const lanes = await Promise.allSettled(sessions.map((s) => lane(s!)));
  const failed = lanes.find((l): l is PromiseRejectedResult => l.status === "rejected");
  if (failed) throw failed.reason;
  if (controller.signal.aborted && rows.some((r) => r === undefined)) {
    throw Object.assign(new Error("sweep cancelled; finished points are in the results file"), { code: "CANCELLED" });
  }
  return rows as SweepRow<G, R>[];
}

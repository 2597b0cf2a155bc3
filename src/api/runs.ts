/**
 * A run directory, `runs/<name>/`: config.json (the experiment, as sent and in the original
 * layout), metrics.jsonl (one line per metrics event), run.json (status, the checkpoint registry
 * the worker reports — path, step, sha256 — and a history of what happened to the run),
 * checkpoints/ and checkpoints-meta/ (written by the worker in the original Score SDE layout),
 * samples/, report.md.
 *
 * Opening a run directory for training assumes its lock is held (Session.train takes it through
 * the worker, see py/fpdiff/rundir.py): so a run.json that says "running" was left by a process
 * that died (it becomes "interrupted"), and temporary files are debris of a dead writer.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { originalLayout, type Experiment, type ExperimentInput } from "../dsl/index.js";
import { FpdError } from "../protocol/errors.js";

export interface CheckpointRecord {
  kind: "snapshot" | "meta";
  path: string;
  step: number;
  sha256: string;
  bytes?: number;
  /** The last metrics logged at or before this step. */
  metrics?: Record<string, number>;
}

/** One event in a run's life that a later reader must be able to see. */
export type RunHistoryEntry =
  | { time: string; event: "interrupted"; step: number; message: string }
  | { time: string; event: "cleaned"; files: string[] }
  | { time: string; event: "config-change"; changes: ConfigChange[]; from: Experiment; to: Experiment };

export interface RunRecord {
  name: string;
  experiment: string;
  status: "created" | "running" | "completed" | "stopped" | "cancelled" | "diverged" | "failed" | "interrupted";
  created: string;
  updated: string;
  step: number;
  checkpoints: CheckpointRecord[];
  error?: string;
  history?: RunHistoryEntry[];
}

/** A field of the experiment that differs between a run's config.json and a new experiment. */
export interface ConfigChange {
  path: string;
  from: unknown;
  to: unknown;
}

/** A run directory's file cannot be used (unreadable, not JSON, not an fpdiff run). */
export class RunDirError extends FpdError {
  readonly path: string;
  constructor(message: string, path: string) {
    super("RUN_DIR", message);
    this.path = path;
  }
}

/** The experiment differs from the one the run was trained with. */
export class ConfigChangedError extends FpdError {
  readonly path: string;
  readonly details: { changes: ConfigChange[] };
  constructor(dir: string, changes: ConfigChange[]) {
    const shown = changes
      .slice(0, 6)
      .map((c) => `${c.path}: ${JSON.stringify(c.from)} → ${JSON.stringify(c.to)}`)
      .join("; ");
    super(
      "CONFIG_CHANGED",
      `${dir} was trained with a different experiment (${shown}${changes.length > 6 ? `; and ${changes.length - 6} more` : ""}); ` +
        "continuing it would mix two experiments in one run. Use another --run-dir, or pass --allow-config-change " +
        "to continue with the new one (both are recorded in run.json)",
    );
    this.path = join(dir, "config.json");
    this.details = { changes };
  }
}

/** Another process trains in this run directory. */
export class RunLockedError extends FpdError {
  readonly path: string;
  readonly details: { holder: Record<string, unknown> | null };
  constructor(dir: string, holder: Record<string, unknown> | null) {
    const who = holder
      ? `pid ${String(holder.pid)}${holder.worker ? ` (worker pid ${String(holder.worker)})` : ""}${holder.since ? `, since ${String(holder.since)}` : ""}`
      : "a process that is still starting";
    super("RUN_LOCKED", `${dir} is in use by another fpdiff process: ${who}. Wait for it to finish, or stop it, or use another --run-dir`);
    this.path = dir;
    this.details = { holder };
  }
}

/**
 * Fields that may change when a run is continued: how long it runs and how often it logs and
 * saves, evaluation and sampling settings, its name. Anything else (SDE, network, data, loss,
 * optimiser, batch size, seed…) changes what the run computes.
 */
const CONTINUABLE = [
  "name",
  "description",
  "training.nIters",
  "training.snapshotFreq",
  "training.snapshotFreqForPreemption",
  "training.logFreq",
  "training.evalFreq",
  "training.snapshotSampling",
  "training.snapshotSamples",
  "training.snapshotBpd",
  "training.tensorboard",
  "eval",
  "sampling",
];

function flatten(value: unknown, prefix: string, out: Map<string, unknown>): void {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (Array.isArray(value) && value.some((v) => v !== null && typeof v === "object")) {
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  } else out.set(prefix, value);
}

/** The fields that differ between two experiments, leaving out those a continued run may change. */
export function experimentChanges(before: unknown, after: unknown): ConfigChange[] {
  const a = new Map<string, unknown>();
  const b = new Map<string, unknown>();
  flatten(before, "", a);
  flatten(after, "", b);
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  const free = (p: string) => CONTINUABLE.some((c) => p === c || p.startsWith(`${c}.`) || p.startsWith(`${c}[`));
  return keys
    .filter((k) => !free(k) && JSON.stringify(a.get(k)) !== JSON.stringify(b.get(k)))
    .map((k) => ({ path: k, from: a.get(k), to: b.get(k) }));
}

/** Parse a JSON file of a run directory; an unreadable or corrupt one is an error naming it. */
function readJson<T>(path: string, what: string): T {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new RunDirError(`${path}: cannot read the ${what}: ${(err as Error).message}`, path);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new RunDirError(`${path}: the ${what} is not valid JSON (${(err as Error).message}); fix or remove the file`, path);
  }
}

function readRecord(dir: string): RunRecord | undefined {
  const p = join(dir, "run.json");
  if (!existsSync(p)) return undefined;
  const r = readJson<RunRecord>(p, "run record");
  if (r === null || typeof r !== "object" || !Array.isArray(r.checkpoints) || typeof r.status !== "string") {
    throw new RunDirError(`${p}: not an fpdiff run record (no status or checkpoints)`, p);
  }
  return r;
}

function readStoredExperiment(dir: string): ExperimentInput | undefined {
  const p = join(dir, "config.json");
  if (!existsSync(p)) return undefined;
  const c = readJson<{ experiment?: ExperimentInput }>(p, "run's experiment");
  if (c === null || typeof c !== "object" || c.experiment === null || typeof c.experiment !== "object") {
    throw new RunDirError(`${p}: holds no "experiment"; is this an fpdiff run directory?`, p);
  }
  return c.experiment;
}

/** The experiment a run directory was trained with (its config.json, as stored). */
export function readRunExperiment(dir: string): ExperimentInput {
  const abs = resolve(dir);
  const stored = readStoredExperiment(abs);
  if (!stored) throw new RunDirError(`${dir} is not an fpdiff run directory (no config.json)`, join(abs, "config.json"));
  return stored;
}

/** The run's newest checkpoint that still exists (registry first, then the meta file). */
export function latestRunCheckpoint(dir: string): string | undefined {
  const abs = resolve(dir);
  const record = readRecord(abs);
  const best = [...(record?.checkpoints ?? [])].filter((c) => existsSync(c.path)).sort((a, b) => b.step - a.step)[0];
  if (best) return best.path;
  const meta = join(abs, "checkpoints-meta", "checkpoint.pth");
  return existsSync(meta) ? meta : undefined;
}

/** Debris of writers that died mid-write: the worker's `.<name>.*.tmp`, ours `<name>.<pid>.tmp`. */
function removeTemporaryFiles(dir: string): string[] {
  const removed: string[] = [];
  for (const sub of ["", "checkpoints", "checkpoints-meta", "samples"]) {
    const d = join(dir, sub);
    if (!existsSync(d)) continue;
    for (const name of readdirSync(d)) {
      if (!name.endsWith(".tmp")) continue;
      if (!(name.startsWith(".") || /\.\d+\.tmp$/.test(name))) continue;
      try {
        unlinkSync(join(d, name));
        removed.push(join(d, name));
      } catch {
        // gone already, or not ours to remove: leave it
      }
    }
  }
  return removed;
}

/** Whether `dir` holds a checkpoint of an earlier call (the meta file or a snapshot). */
function hasRunCheckpoints(dir: string): boolean {
  if (existsSync(join(dir, "checkpoints-meta", "checkpoint.pth"))) return true;
  const d = join(dir, "checkpoints");
  return existsSync(d) && readdirSync(d).some((n) => /^checkpoint_\d+\.pth$/.test(n));
}

export interface OpenOptions {
  /** Continue a run whose experiment differs (recorded in run.json's history). */
  allowConfigChange?: boolean;
  /** A fresh start: refused when the directory holds checkpoints of an earlier run. */
  fresh?: boolean;
}

export class RunDir {
  readonly dir: string;
  private record: RunRecord;
  private lastMetrics: Record<string, number> | undefined;
  /** A changed experiment: config.json and its history entry, written once the worker has accepted the run. */
  private pendingChange: { experiment: Experiment; entry: RunHistoryEntry } | undefined;
  /** The step of the last metrics line written by this process (−1 before any). */
  lastLoggedStep = -1;

  private constructor(dir: string, record: RunRecord) {
    this.dir = dir;
    this.record = record;
  }

  /**
   * Open `dir` for training `experiment` (creating it). The caller holds the directory's lock.
   * An existing run.json is kept, so a resumed run continues its record; a run that another
   * process left "running" is marked "interrupted"; a changed experiment is refused unless
   * `allowConfigChange` (config.json is then replaced only by `commitConfig`, once the worker has
   * accepted the run). Nothing is written before these checks pass.
   */
  static open(dir: string, experiment: Experiment, opts: OpenOptions = {}): RunDir {
    const abs = resolve(dir);
    const existing = existsSync(abs) ? readRecord(abs) : undefined;
    const stored = existsSync(abs) ? readStoredExperiment(abs) : undefined;
    const changes = stored ? experimentChanges(stored, experiment) : [];
    if (changes.length && !opts.allowConfigChange) throw new ConfigChangedError(abs, changes);
    if (opts.fresh && hasRunCheckpoints(abs)) {
      throw new RunDirError(`${abs} already holds a run (checkpoints of an earlier call); resume it or choose another --run-dir`, abs);
    }

    for (const sub of ["", "checkpoints", "checkpoints-meta", "samples"]) mkdirSync(join(abs, sub), { recursive: true });
    const now = new Date().toISOString();
    const record: RunRecord = existing ?? {
      name: experiment.name,
      experiment: experiment.name,
      status: "created",
      created: now,
      updated: now,
      step: 0,
      checkpoints: [],
    };
    const run = new RunDir(abs, record);
    if (record.status === "running") {
      run.note({
        time: now,
        event: "interrupted",
        step: record.step,
        message: "the process training this run ended without recording how (killed, or its machine stopped)",
      });
      record.status = "interrupted";
    }
    const debris = removeTemporaryFiles(abs);
    if (debris.length) run.note({ time: now, event: "cleaned", files: debris });
    if (changes.length) {
      run.pendingChange = { experiment, entry: { time: now, event: "config-change", changes, from: stored as Experiment, to: experiment } };
    } else run.writeConfig(experiment);
    run.save();
    return run;
  }

  get path(): string {
    return this.dir;
  }

  get info(): Readonly<RunRecord> {
    return this.record;
  }

  /** Whether the worker left a preemption checkpoint here to resume from. */
  get hasMetaCheckpoint(): boolean {
    return existsSync(join(this.dir, "checkpoints-meta", "checkpoint.pth"));
  }

  /** Whether any checkpoint of an earlier call is here (meta or snapshot) to resume from. */
  get hasCheckpoints(): boolean {
    return hasRunCheckpoints(this.dir);
  }

  /** Write the experiment a changed run continues with (and record the change), once the worker has accepted it. */
  commitConfig(): void {
    if (!this.pendingChange) return;
    const { experiment, entry } = this.pendingChange;
    this.pendingChange = undefined;
    this.writeConfig(experiment);
    this.note({ ...entry, time: new Date().toISOString() });
    this.save();
  }

  metrics(entry: { step: number } & Record<string, unknown>): void {
    appendFileSync(join(this.dir, "metrics.jsonl"), JSON.stringify({ time: new Date().toISOString(), ...entry }) + "\n");
    const flat: Record<string, number> = {};
    for (const [k, v] of Object.entries(entry)) if (typeof v === "number") flat[k] = v;
    for (const [k, v] of Object.entries((entry.terms as Record<string, number> | undefined) ?? {})) flat[k] = v;
    this.lastMetrics = flat;
    this.lastLoggedStep = Math.max(this.lastLoggedStep, entry.step);
    this.record.step = Math.max(this.record.step, entry.step);
  }

  /**
   * An evaluation line in metrics.jsonl (held-out losses as `eval/<term>`, snapshot samples,
   * snapshot bits/dim), beside the training lines; it does not count as the last training step logged.
   */
  evaluation(entry: { step: number; kind: string } & Record<string, unknown>): void {
    appendFileSync(join(this.dir, "metrics.jsonl"), JSON.stringify({ time: new Date().toISOString(), ...entry }) + "\n");
  }

  checkpoint(c: Omit<CheckpointRecord, "metrics">): void {
    const rec: CheckpointRecord = { ...c, ...(this.lastMetrics ? { metrics: this.lastMetrics } : {}) };
    this.record.checkpoints = this.record.checkpoints.filter((x) => x.path !== c.path);
    this.record.checkpoints.push(rec);
    this.record.step = Math.max(this.record.step, c.step);
    this.save();
  }

  status(status: RunRecord["status"], error?: string): void {
    this.record.status = status;
    if (error) this.record.error = error;
    else delete this.record.error;
    this.save();
  }

  /** The latest checkpoint (by step) the worker reported, if any. */
  latestCheckpoint(): CheckpointRecord | undefined {
    return [...this.record.checkpoints].sort((a, b) => b.step - a.step || (a.kind === "snapshot" ? -1 : 1))[0];
  }

  /** The training lines of metrics.jsonl (one per logged step). */
  readMetrics(): Array<Record<string, unknown>> {
    return this.readLines().filter((l) => l.kind === undefined);
  }

  /** The evaluation lines of metrics.jsonl (`kind`: "eval" | "samples" | "bpd"). */
  readEvaluations(): Array<Record<string, unknown>> {
    return this.readLines().filter((l) => l.kind !== undefined);
  }

  private readLines(): Array<Record<string, unknown>> {
    const p = join(this.dir, "metrics.jsonl");
    if (!existsSync(p)) return [];
    return readFileSync(p, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l, i) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch (err) {
          throw new RunDirError(`${p}: line ${i + 1} is not valid JSON (${(err as Error).message})`, p);
        }
      });
  }

  writeFile(name: string, content: string): string {
    const p = join(this.dir, name);
    atomicWrite(p, content);
    return p;
  }

  private note(entry: RunHistoryEntry): void {
    (this.record.history ??= []).push(entry);
  }

  private writeConfig(experiment: Experiment): void {
    atomicWrite(join(this.dir, "config.json"), JSON.stringify({ experiment, original: originalLayout(experiment) }, null, 2) + "\n");
  }

  private save(): void {
    this.record.updated = new Date().toISOString();
    atomicWrite(join(this.dir, "run.json"), JSON.stringify(this.record, null, 2) + "\n");
  }
}

export function atomicWrite(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

/**
 * A run directory, `runs/<name>/`: config.json (the experiment, as sent and in the original
 * layout), metrics.jsonl (one line per metrics event), run.json (status and the checkpoint
 * registry the worker reports: path, step, sha256), checkpoints/ and checkpoints-meta/ (written by
 * the worker in the original Score SDE layout), samples/, report.md.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { originalLayout, type Experiment } from "../dsl/index.js";

export interface CheckpointRecord {
  kind: "snapshot" | "meta";
  path: string;
  step: number;
  sha256: string;
  bytes?: number;
  /** The last metrics logged at or before this step. */
  metrics?: Record<string, number>;
}

export interface RunRecord {
  name: string;
  experiment: string;
  status: "created" | "running" | "completed" | "stopped" | "cancelled" | "diverged" | "failed";
  created: string;
  updated: string;
  step: number;
  checkpoints: CheckpointRecord[];
  error?: string;
}

export class RunDir {
  readonly dir: string;
  private record: RunRecord;
  private lastMetrics: Record<string, number> | undefined;
  /** The step of the last metrics line written by this process (−1 before any). */
  lastLoggedStep = -1;

  private constructor(dir: string, record: RunRecord) {
    this.dir = dir;
    this.record = record;
  }

  /** Open `dir` (creating it); an existing run.json is kept, so a resumed run continues its record. */
  static open(dir: string, experiment: Experiment): RunDir {
    const abs = resolve(dir);
    for (const sub of ["", "checkpoints", "checkpoints-meta", "samples"]) mkdirSync(join(abs, sub), { recursive: true });
    const now = new Date().toISOString();
    const recordPath = join(abs, "run.json");
    const record: RunRecord = existsSync(recordPath)
      ? (JSON.parse(readFileSync(recordPath, "utf8")) as RunRecord)
      : { name: experiment.name, experiment: experiment.name, status: "created", created: now, updated: now, step: 0, checkpoints: [] };
    const run = new RunDir(abs, record);
    atomicWrite(join(abs, "config.json"), JSON.stringify({ experiment, original: originalLayout(experiment) }, null, 2) + "\n");
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
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  writeFile(name: string, content: string): string {
    const p = join(this.dir, name);
    atomicWrite(p, content);
    return p;
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

/**
 * Training progress on the terminal: a live bar with the latest loss terms when stderr is a TTY,
 * plain periodic lines otherwise (CI logs, pipes). Writes to stderr so `--json` stdout stays clean.
 */
import { formatNumber, formatSeconds } from "./render.js";

export interface ProgressState {
  step: number;
  total: number;
  itPerSec?: number;
  etaSeconds?: number;
}

export class ProgressLine {
  private readonly tty: boolean;
  private readonly label: string;
  private readonly unit: string;
  private readonly everyMs: number;
  private lastPrint = 0;
  private terms: Record<string, number> = {};
  private state: ProgressState = { step: 0, total: 0 };
  private drawn = false;
  private started = false;

  constructor(label: string, opts: { tty?: boolean; everyMs?: number; quiet?: boolean; unit?: string } = {}) {
    this.label = label;
    this.unit = opts.unit ?? "step";
    this.tty = opts.quiet ? false : (opts.tty ?? Boolean(process.stderr.isTTY));
    this.everyMs = opts.quiet ? Infinity : (opts.everyMs ?? (this.tty ? 100 : 10_000));
  }

  /** An op's `{done, total}` events as progress: pass it as the request's `onEvent`. */
  readonly count = (e: { done: number; total: number }): void => this.progress({ step: e.done, total: e.total });

  progress(s: ProgressState): void {
    this.state = s;
    this.started = s.total > 0;
    this.draw();
  }

  metrics(terms: Record<string, number>): void {
    this.terms = terms;
    this.draw();
  }

  /** A line that must not be overwritten (checkpoints, warnings). */
  note(text: string): void {
    if (this.everyMs === Infinity) return;
    if (this.tty && this.drawn) process.stderr.write("\r\x1b[2K");
    process.stderr.write(`${text}\n`);
    if (this.tty && this.drawn) {
      // put the live bar back under the note
      this.drawn = false;
      this.lastPrint = 0;
      this.draw();
    }
  }

  done(text?: string): void {
    if (this.tty && this.drawn) process.stderr.write("\r\x1b[2K");
    this.drawn = false;
    if (text && this.everyMs !== Infinity) process.stderr.write(`${text}\n`);
  }

  private draw(): void {
    if (!this.started) return;
    const now = Date.now();
    if (now - this.lastPrint < this.everyMs) return;
    this.lastPrint = now;
    const { step, total, itPerSec, etaSeconds } = this.state;
    const frac = total > 0 ? Math.min(1, step / total) : 0;
    const terms = Object.entries(this.terms)
      .map(([k, v]) => `${k} ${formatNumber(v)}`)
      .join("  ");
    const rate = itPerSec !== undefined ? `${formatNumber(itPerSec)} it/s` : "";
    const eta = etaSeconds !== undefined ? `ETA ${formatSeconds(etaSeconds)}` : "";
    if (this.tty) {
      const width = 24;
      const filled = Math.round(frac * width);
      const bar = `[${"=".repeat(Math.max(0, filled - 1))}${filled > 0 ? ">" : ""}${" ".repeat(width - filled)}]`;
      const line = `${this.label} ${bar} ${step}/${total} ${(frac * 100).toFixed(0)}% ${rate} ${eta}  ${terms}`;
      const cols = process.stderr.columns ?? 120;
      process.stderr.write(`\r\x1b[2K${line.slice(0, cols - 1)}`);
      this.drawn = true;
    } else {
      process.stderr.write(`${this.label} ${this.unit} ${step}/${total} (${(frac * 100).toFixed(0)}%) ${rate} ${eta}  ${terms}\n`);
    }
  }
}

/** Typed result tables: markdown and CSV, for reports, sweeps and ablations. */

export type Row = Record<string, string | number | boolean | null | undefined>;

function cell(v: Row[string], digits: number): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(digits - 1) : v.toFixed(digits);
  }
  return String(v);
}

export function columnsOf(rows: readonly Row[]): string[] {
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  return cols;
}

export function toMarkdown(rows: readonly Row[], opts: { columns?: string[]; digits?: number } = {}): string {
  const cols = opts.columns ?? columnsOf(rows);
  const digits = opts.digits ?? 4;
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const numeric = cols.map((c) => rows.length > 0 && rows.every((r) => typeof r[c] === "number" || r[c] == null));
  return [
    `| ${cols.map(esc).join(" | ")} |`,
    `|${numeric.map((n) => (n ? " ---: " : " --- ")).join("|")}|`,
    ...rows.map((r) => `| ${cols.map((c) => esc(cell(r[c], digits))).join(" | ")} |`),
  ].join("\n");
}

export function toCsv(rows: readonly Row[], columns?: string[]): string {
  const cols = columns ?? columnsOf(rows);
  const q = (v: Row[string]) => {
    if (v === null || v === undefined) return "";
    const s = String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.map((c) => q(c)).join(","), ...rows.map((r) => cols.map((c) => q(r[c])).join(","))].join("\n") + "\n";
}

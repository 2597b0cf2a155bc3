// `fpd ablate` on a small script: table, CSV, plot, and resuming after a failed point.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { fpdJson, runCli } from "../helpers/cli.js";

const script = fileURLToPath(new URL("./fixtures/tiny_ablation.ts", import.meta.url));

describe("fpd ablate", () => {
  it("writes results.md, results.csv and results.png, and resumes a half-finished ablation", { timeout: 180_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "fpd-ablate-"));
    const failed = await runCli(["ablate", script, "--out", out, "--param", "failAt=3", "--device", "cpu"]);
    expect(failed.status).not.toBe(0);
    expect(failed.stderr).toMatch(/planned failure at order 3/);
    expect(readFileSync(join(out, "results.jsonl"), "utf8").trim().split("\n")).toHaveLength(1);

    const r = await fpdJson(["ablate", script, "--out", out, "--device", "cpu"]);
    expect(r.rows.map((row: { order: number }) => row.order)).toEqual([1, 3]);
    expect(r.rows.every((row: { nll: number; steps: number }) => Number.isFinite(row.nll) && row.steps === 5)).toBe(true);
    const md = readFileSync(join(out, "results.md"), "utf8");
    expect(md).toMatch(/\| order \| nll \| steps \|/);
    expect(readFileSync(join(out, "results.csv"), "utf8").split("\n")[0]).toBe("order,nll,steps");
    expect(existsSync(join(out, "results.png"))).toBe(true);
    // the first point was not trained again: its run directory holds one completed run
    expect(JSON.parse(readFileSync(join(out, "points", "order-1", "run.json"), "utf8")).status).toBe("completed");
  });

  it("refuses unknown params with the names it takes", async () => {
    const r = await runCli(["ablate", script, "--param", "stpes=3"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/stpes.*steps, failAt/);
  });
});

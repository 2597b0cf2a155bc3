// sweep(): a grid run on real workers, interrupted and resumed from its results file.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { gridPoints, pointKey, sweep } from "../../src/api/sweep.js";
import { tensor, type Tensor } from "../../src/index.js";

describe("sweep", () => {
  it("enumerates a grid in row-major order with order-independent keys", () => {
    expect(gridPoints({ a: [1, 2], b: ["x", "y"] })).toEqual([
      { a: 1, b: "x" },
      { a: 1, b: "y" },
      { a: 2, b: "x" },
      { a: 2, b: "y" },
    ]);
    expect(pointKey({ a: 1, b: "x" })).toBe(pointKey({ b: "x", a: 1 }));
    expect(() => gridPoints({ a: [] })).toThrow(/no values/);
  });

  it("a 2×2 sweep interrupted after two points resumes and finishes with four rows", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "fpd-sweep-")), "results.jsonl");
    const grid = { alpha: [0, 0.5], m: [1, 2] } as const;
    const calls: string[] = [];
    const work = async (p: { alpha: number; m: number }, ctx: { session: { worker: { request: Function } } }) => {
      calls.push(pointKey(p));
      // the result comes from the worker, so the rows are real round trips
      const r = (await ctx.session.worker.request("echo", { x: tensor([p.alpha * 10 + p.m], [1], "float64") })) as { x: Tensor };
      return { value: r.x.item(), squared: r.x.item() ** 2 };
    };

    let n = 0;
    await expect(
      sweep(grid, async (p, ctx) => {
        if (++n === 3) throw new Error("simulated crash at the third point");
        return work(p, ctx);
      }, { resultsFile: file }),
    ).rejects.toThrow(/simulated crash/);
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(2);

    calls.length = 0;
    const resumed: boolean[] = [];
    const rows = await sweep(grid, work, { resultsFile: file, onPoint: (i) => resumed.push(i.resumed) });
    expect(rows).toHaveLength(4);
    expect(calls).toHaveLength(2); // only the two missing points ran again
    expect(resumed.filter(Boolean)).toHaveLength(2);
    expect(rows.map((r) => [r.alpha, r.m, r.value])).toEqual([
      [0, 1, 1],
      [0, 2, 2],
      [0.5, 1, 6],
      [0.5, 2, 7],
    ]);
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(4);
  });

  it("runs points on several workers with `parallel`", async () => {
    const pids = new Set<number>();
    const rows = await sweep(
      { i: [1, 2, 3, 4] },
      async (p, { session }) => {
        pids.add(session.worker.pid);
        await session.worker.request("sleep", { seconds: 0.2 });
        return { twice: p.i * 2 };
      },
      { parallel: 2 },
    );
    expect(rows.map((r) => r.twice)).toEqual([2, 4, 6, 8]);
    expect(pids.size).toBe(2);
  });
});

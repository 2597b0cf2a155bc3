// `fpd sample` through the real `fpd` binary and worker, on a small trained toy run.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fpdJson as fpd } from "../helpers/cli.js";
import { sharedToyRun } from "../helpers/runs.js";

const runDir = sharedToyRun();
const dir = mkdtempSync(join(tmpdir(), "fpd-cli-"));

describe("fpd sample", () => {
  it("writes a .npy of ODE samples and a PNG", { timeout: 180_000 }, async () => {
    const s = await fpd(["sample", "--run", runDir(), "--n", "40", "--method", "ode", "--out", join(dir, "x.npy"), "--plot", join(dir, "x.png"), "--device", "cpu"]);
    expect(s.shape).toEqual([40, 2]);
    const npy = readFileSync(join(dir, "x.npy"));
    expect(npy.subarray(0, 6).toString("latin1")).toBe("\x93NUMPY");
    expect(npy.byteLength).toBe(128 + 40 * 2 * 4);
    expect(readFileSync(join(dir, "x.png")).subarray(1, 4).toString("latin1")).toBe("PNG");
  });
});

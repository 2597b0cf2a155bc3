// `fpd eval bpd | loss | fpe` through the real `fpd` binary and worker, on a small trained toy run.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fpdJson as fpd } from "../helpers/cli.js";
import { sharedToyRun } from "../helpers/runs.js";

const isPng = (p: string) => readFileSync(p).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
const runDir = sharedToyRun();
const dir = mkdtempSync(join(tmpdir(), "fpd-cli-"));

describe("fpd eval", () => {
  it("bpd, loss and fpe (with its plot) work on a run directory", { timeout: 180_000 }, async () => {
    const bpd = await fpd(["eval", "bpd", "--run", runDir(), "--n", "50", "--device", "cpu"]);
    expect(bpd.n).toBe(50);
    expect(Number.isFinite(bpd.nll)).toBe(true);
    expect(bpd.bpd).toBeNull(); // toy data: nats only
    const loss = await fpd(["eval", "loss", "--run", runDir(), "--n", "64", "--device", "cpu"]);
    expect(Object.keys(loss.terms)).toEqual(expect.arrayContaining(["dsm"]));
    const fpe = await fpd(["eval", "fpe", "--run", runDir(), "--t", "0.1,0.5", "--n", "32", "--plot", join(dir, "fpe.png"), "--device", "cpu"]);
    expect(fpe.t).toEqual([0.1, 0.5]);
    expect(fpe.residual.every((v: number) => v >= 0)).toBe(true);
    expect(isPng(join(dir, "fpe.png"))).toBe(true);
  });
});

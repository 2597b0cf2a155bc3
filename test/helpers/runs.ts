// A small trained toy run directory, made in-process through Session (tests of commands that read one).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll } from "vitest";
import { getPreset } from "../../configs/index.js";
import { applyOverrides } from "../../src/dsl/index.js";
import { Session } from "../../src/index.js";

/** Train `toy/checkerboard_ve_order2` for 20 steps into a fresh directory; returns it. */
export async function trainedToyRun(): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), "fpd-run-")), "run");
  const session = await Session.open({ device: "cpu" });
  try {
    const exp = applyOverrides(getPreset("toy/checkerboard_ve_order2")!.experiment, [
      "training.nIters=20",
      "training.batchSize=128",
      "training.snapshotFreq=10",
      "training.logFreq=5",
    ]);
    // in-loop evaluation off: the commands under test evaluate the run themselves
    await session.train(exp, { runDir: dir, evaluate: false });
  } finally {
    await session.close();
  }
  return dir;
}

/**
 * `trainedToyRun()` once, before the first test of the file that calls this at its top level; the
 * returned function gives the run directory inside the tests.
 */
export function sharedToyRun(): () => string {
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await trainedToyRun();
  }, 120_000);
  return () => {
    if (!dir) throw new Error("the shared toy run is made before the file's first test");
    return dir;
  };
}

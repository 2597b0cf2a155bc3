// No Node process is left hanging: after a worker crash or close, the event loop drains by itself.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const script = fileURLToPath(new URL("./fixtures/no-hang.ts", import.meta.url));

function runNode(mode: string) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", script, mode], { encoding: "utf8", timeout: 30_000 });
  return { ...r, seconds: (Date.now() - t0) / 1000 };
}

describe("the Node process exits on its own", () => {
  it("after the worker crashes", () => {
    const r = runNode("crash");
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("WorkerCrashedError");
  });

  it("after close()", () => {
    const r = runNode("close");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("closed");
  });
});

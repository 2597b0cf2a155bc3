// No Node process is left hanging: after a worker crash or close, the event loop drains by itself.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const script = fileURLToPath(new URL("./fixtures/no-hang.ts", import.meta.url));

function runNode(mode: string): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ["--import", "tsx", script, mode], { encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? child.exitCode : 0, signal: child.signalCode, stdout, stderr }),
    );
  });
}

describe("the Node process exits on its own", () => {
  it("after the worker crashes", async () => {
    const r = await runNode("crash");
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("WorkerCrashedError");
  });

  it("after close()", async () => {
    const r = await runNode("close");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("closed");
  });
});

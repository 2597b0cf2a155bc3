// Supervision of the worker process (src/bridge/process.ts) and where the worker listens
// (py/fpdiff/endpoint.py): start-up failures, the private socket directory and its fall-backs,
// clean-up after dead workers, and a Node process that exits on its own.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Worker, WorkerStartError } from "../../src/index.js";

const script = fileURLToPath(new URL("./fixtures/no-hang.ts", import.meta.url));

function runNode(mode: string): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ["--import", "tsx", script, mode], { encoding: "utf8", timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? child.exitCode : 0, signal: child.signalCode, stdout, stderr }),
    );
  });
}

const socketDir = (w: Worker) => dirname(w.endpoint.replace(/^ipc:\/\//, ""));

describe("start-up", () => {
  it("failures name the cause", async () => {
    const missing = (await Worker.start({ python: "/nonexistent/python3" }).catch((e: unknown) => e)) as WorkerStartError;
    expect(missing).toBeInstanceOf(WorkerStartError);
    expect(missing.message).toMatch(/nonexistent/);
    // Debian's bare python3 has no pyzmq: the error carries Python's own complaint
    const bare = (await Worker.start({ python: "/usr/bin/python3", env: { PYTHONNOUSERSITE: "1" } }).catch((e: unknown) => e)) as WorkerStartError;
    expect(bare).toBeInstanceOf(WorkerStartError);
    expect(bare.message).toMatch(/No module named|ModuleNotFoundError/);
  });
});

describe("where the worker listens", () => {
  it("a TMPDIR too long for a Unix socket path falls back to a shorter private directory, not TCP", async () => {
    const long = join(mkdtempSync(join(tmpdir(), "fpd-long-")), "x".repeat(100));
    mkdirSync(long, { recursive: true });
    const logs: string[] = [];
    const w = await Worker.start({ env: { TMPDIR: long }, onStderr: (l) => logs.push(l) });
    try {
      expect(w.endpoint).toMatch(/^ipc:\/\//);
      expect(w.endpoint.length - "ipc://".length).toBeLessThanOrEqual(107);
      expect(logs.join("\n")).not.toMatch(/loopback TCP/);
      expect((await w.request("ping", {})).pong).toBe(true);
    } finally {
      await w.close();
    }
  });

  it("with no usable private directory it listens on loopback TCP and says so once", async () => {
    const long = join(mkdtempSync(join(tmpdir(), "fpd-long-")), "y".repeat(100));
    mkdirSync(long, { recursive: true });
    const logs: string[] = [];
    const w = await Worker.start({ env: { FPD_SOCKET_DIRS: long }, onStderr: (l) => logs.push(l) });
    try {
      expect(w.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      expect((await w.request("ping", {})).pong).toBe(true);
      const notes = logs.filter((l) => /loopback TCP/.test(l));
      expect(notes).toHaveLength(1);
      expect(notes[0]).toMatch(/socket path over 107 bytes/);
    } finally {
      await w.close();
    }
  });

  it("a starting worker removes the socket directories of dead workers, never a live one's", { timeout: 60_000 }, async () => {
    const parent = mkdtempSync(join(tmpdir(), "fpd-socks-"));
    const env = { FPD_SOCKET_DIRS: parent };
    const live = await Worker.start({ env });
    const dead = await Worker.start({ env });
    const other = join(parent, "fpd-not-a-worker");
    mkdirSync(other);
    rmSync(other, { recursive: true }); // an empty fpd-* directory stays; one with other files stays
    mkdirSync(join(other, "data"), { recursive: true });
    dead.kill("SIGKILL");
    await dead.exit;
    expect(existsSync(socketDir(dead))).toBe(true); // a killed worker cannot clean up after itself
    const next = await Worker.start({ env });
    try {
      expect(existsSync(socketDir(dead))).toBe(false);
      expect(existsSync(socketDir(live))).toBe(true);
      expect(existsSync(other)).toBe(true);
      expect((await live.request("ping", {})).pong).toBe(true);
      expect(readdirSync(parent).sort()).toEqual([socketDir(live), socketDir(next), other].map((p) => p.split("/").pop()).sort());
    } finally {
      await Promise.all([live.close(), next.close(), dead.close()]);
    }
  });
});

describe("the Node process exits on its own", () => {
  it("after the worker crashes", { timeout: 150_000 }, async () => {
    const r = await runNode("crash");
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("WorkerCrashedError");
  });

  it("after close()", { timeout: 150_000 }, async () => {
    const r = await runNode("close");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("closed");
  });
});

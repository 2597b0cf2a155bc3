// The Worker (src/bridge/worker.ts: a supervised process plus its request client) with a real
// Python worker: crashes, hangs and closes are reported, and only its parent may talk to it.
import { execFile, execFileSync } from "node:child_process";
import { accessSync, chmodSync, constants, cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PROTOCOL_VERSION, RequestError, WorkerCrashedError, encode, Worker } from "../../src/index.js";
import { resolvePython } from "../../src/bridge/python.js";
import { PY_ROOT } from "../../src/paths.js";
import { rawDealer } from "../helpers/bridge.js";

describe("failure of the worker process", () => {
  it("SIGKILL mid-request rejects every pending request with WorkerCrashedError within 2 s", async () => {
    const w = await Worker.start();
    const pending = [w.request("sleep", { seconds: 30 }), w.request("sleep", { seconds: 1 }), w.request("sleep", { seconds: 1 })];
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    w.kill("SIGKILL");
    const errors = await Promise.all(pending.map((p) => p.catch((e: unknown) => e)));
    const elapsed = Date.now() - t0;
    for (const e of errors) {
      expect(e).toBeInstanceOf(WorkerCrashedError);
      expect((e as WorkerCrashedError).signal).toBe("SIGKILL");
    }
    expect(elapsed).toBeLessThan(2000);
    await expect(w.request("ping", {})).rejects.toBeInstanceOf(WorkerCrashedError);
    await w.close();
  });

  it("a worker that stops answering is declared hung, killed, and its requests rejected", async () => {
    const w = await Worker.start({ livenessTimeoutMs: 800 });
    const p = w.request("sleep", { seconds: 30 });
    await new Promise((r) => setTimeout(r, 100));
    process.kill(w.pid, "SIGSTOP");
    const t0 = Date.now();
    const err = (await p.catch((e: unknown) => e)) as WorkerCrashedError;
    expect(err).toBeInstanceOf(WorkerCrashedError);
    expect(err.message).toMatch(/stopped answering/);
    expect(Date.now() - t0).toBeLessThan(2000);
    await w.exit;
    await w.close();
  });

  it("close() asks the worker to stop and the process exits", async () => {
    const w = await Worker.start();
    const running = w.request("sleep", { seconds: 30 }).catch((e: unknown) => e);
    await w.close();
    expect(w.alive).toBe(false);
    expect(((await running) as RequestError).code).toMatch(/CANCELLED|WORKER_CRASHED|WORKER_CLOSED/);
    expect(() => process.kill(w.pid, 0)).toThrow();
  });
});

/** Who can run a client as another user here: root with setpriv, and a `nobody` account. */
function canSwitchUser(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    accessSync("/usr/bin/setpriv", constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// A client in another process: connects, asks for hello and shutdown, reports whether anything came back.
const INTRUDER = `
import json, sys, msgpack, zmq
from zmq.utils.monitor import recv_monitor_message
endpoint, password, stop = sys.argv[1], sys.argv[2], sys.argv[3] == "stop"
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
if password != "-":
    s.plain_username, s.plain_password = b"fpd", password.encode()
mon = s.get_monitor_socket()
s.connect(endpoint)
s.send(msgpack.packb({"v": ${PROTOCOL_VERSION}, "id": 1, "op": "hello", "args": {}}))
if stop:
    s.send(msgpack.packb({"v": ${PROTOCOL_VERSION}, "id": 2, "op": "shutdown", "args": {}}))
reply = s.poll(2500) != 0
events = []
while mon.poll(100):
    events.append(recv_monitor_message(mon)["event"])
print(json.dumps({"reply": reply, "authFailed": zmq.EVENT_HANDSHAKE_FAILED_AUTH in events,
                  "connected": zmq.EVENT_CONNECTED in events}))
`;

/**
 * What the other user runs: the base interpreter behind the project's Python, and a world-readable
 * copy of pyzmq and msgpack, because the checkout (CI clones into a 0700 temporary folder) and its
 * .venv may be closed to other accounts.
 */
function nobodyPython(): { python: string; path: string; cleanup: () => void } {
  const probe = "import sys, os, zmq, msgpack; print(sys._base_executable); print(os.path.dirname(os.path.dirname(zmq.__file__)))";
  const [python, site] = execFileSync(resolvePython().python, ["-c", probe], { encoding: "utf8" }).trim().split("\n");
  const dir = mkdtempSync(join(tmpdir(), "fpd-intruder-"));
  for (const name of ["zmq", "pyzmq.libs", "msgpack"]) {
    try {
      cpSync(join(site!, name), join(dir, name), { recursive: true });
    } catch (e) {
      if (name !== "pyzmq.libs") throw e; // only wheels bundle libzmq beside the package
    }
  }
  chmodSync(dir, 0o755);
  return { python: python!, path: dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

type Nobody = ReturnType<typeof nobodyPython>;

async function sendThenReceive(sock: ReturnType<typeof rawDealer>, message: Buffer): Promise<Buffer[]> {
  await sock.send(message);
  return sock.receive();
}

function intrude(endpoint: string, password: string, nobody: Nobody | null, stop = true): Promise<{ reply: boolean; authFailed: boolean; connected: boolean }> {
  const argv = ["-c", INTRUDER, endpoint, password, stop ? "stop" : "hello"];
  const python = nobody?.python ?? resolvePython().python;
  const [cmd, args] = nobody ? ["/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", python, ...argv]] : [python, argv];
  const env = { ...process.env, PYTHONPATH: nobody?.path ?? PY_ROOT, HOME: "/" };
  return new Promise<{ reply: boolean; authFailed: boolean; connected: boolean }>((resolve, reject) =>
    execFile(cmd as string, args as string[], { encoding: "utf8", cwd: "/", env }, (err, out, errOut) =>
      err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(JSON.parse(out.trim().split("\n").pop()!)),
    ),
  );
}

describe("only the parent may talk to its worker", () => {
  let w: Worker;
  const logs: string[] = [];
  let other: Nobody | null = null;
  beforeAll(async () => {
    // loopback TCP: reachable by every local account, so authentication is all that protects it
    w = await Worker.start({ env: { FPD_ENDPOINT: "tcp://127.0.0.1:*" }, onStderr: (l) => logs.push(l) });
    other = canSwitchUser() ? nobodyPython() : null;
  });
  afterAll(async () => {
    other?.cleanup();
    await w?.close();
  });

  it("another user without the secret gets nothing but a refusal, and cannot stop the worker", { timeout: 90_000 }, async () => {
    expect(w.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const none = await intrude(w.endpoint, "-", other);
    expect(none.reply).toBe(false);
    const guessed = await intrude(w.endpoint, "guessed", other);
    expect(guessed).toMatchObject({ reply: false, authFailed: true });
    expect(logs.some((l) => /refused a connection/.test(l))).toBe(true);
    // neither shutdown reached the worker
    expect((await w.request("ping", {})).pong).toBe(true);
    expect(w.alive).toBe(true);
    // the same client with the secret is answered: what refused the others was the secret alone
    const withSecret = await intrude(w.endpoint, w.credentials.password, other, false);
    expect(withSecret.reply).toBe(true);
  });

  it("an in-process client without the secret is refused during the handshake", async () => {
    const v = await Worker.start({ env: { FPD_ENDPOINT: "tcp://127.0.0.1:*" } });
    try {
      const sock = rawDealer(v, { username: "fpd", password: "not-the-secret" }, 1500);
      const events: string[] = [];
      void (async () => {
        for await (const e of sock.events) events.push(e.type);
      })();
      // refused in the handshake, the message either never leaves (the send times out) or is
      // never answered; which one depends on timing
      await expect(sendThenReceive(sock, encode({ v: PROTOCOL_VERSION, id: 1, op: "shutdown", args: {} }))).rejects.toThrow();
      // the refusal is a socket event of its own, which may come after the timeout on a loaded machine
      await vi.waitFor(() => expect(events).toContain("handshake:error:auth"), { timeout: 15_000, interval: 50 });
      sock.close();
      const anonymous = rawDealer(v, null, 1000);
      await expect(sendThenReceive(anonymous, encode({ v: PROTOCOL_VERSION, id: 2, op: "shutdown", args: {} }))).rejects.toThrow();
      anonymous.close();
      expect((await v.request("ping", {})).pong).toBe(true);
    } finally {
      await v.close();
    }
  });

  it("the ipc socket is authenticated too", async () => {
    const v = await Worker.start();
    try {
      expect(v.endpoint).toMatch(/^ipc:\/\//);
      const sock = rawDealer(v, null, 1000);
      await expect(sendThenReceive(sock, encode({ v: PROTOCOL_VERSION, id: 1, op: "hello", args: {} }))).rejects.toThrow();
      sock.close();
      expect((await v.request("ping", {})).pong).toBe(true);
    } finally {
      await v.close();
    }
  });
});

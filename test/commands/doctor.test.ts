// `fpd doctor` through the real CLI binary.
import { describe, expect, it } from "vitest";
import { fpdJson, runCli } from "../helpers/cli.js";

describe("fpd doctor", () => {
  it("--json reports a ready environment with a worker round trip", async () => {
    const out = await fpdJson(["doctor"]);
    expect(out.ok).toBe(true);
    expect(out.packages.torch).toMatch(/^\d+\.\d+/);
    expect(out.packages.pyzmq).toMatch(/^\d+\./);
    expect(out.worker.protocol).toBe(1);
    expect(out.worker.pingP50Us).toBeGreaterThan(0);
    expect(out.checks.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(["node", "python", "torch", "cuda", "worker"]));
  });

  it("names the missing package of a bare interpreter and exits non-zero", async () => {
    // Debian's python3 outside the venv has torch but none of the pip-installed packages.
    const r = await runCli(["doctor"], { ...process.env, FPD_PYTHON: "/usr/bin/python3" });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/FAIL\s+pyzmq\s+cannot import zmq/);
    expect(r.stdout).toMatch(/\/usr\/bin\/python3 -m pip install pyzmq/);
    expect(r.stdout).toMatch(/NOT ready/);
  });

  it("explains an interpreter that does not exist", async () => {
    const r = await runCli(["doctor", "--json"], { ...process.env, FPD_PYTHON: "/no/such/python" });
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(false);
    expect(out.checks.find((c: { name: string }) => c.name === "python").detail).toMatch(/ENOENT/);
  });
});

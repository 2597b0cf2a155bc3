// Set-up (scripts/setup.mjs installs with `npm install`) must leave the tracked package-lock.json as
// it is on a fresh clone: the lock has to be the one npm itself writes for package.json, with every
// platform's optional packages (msgpackr-extract, rollup, esbuild). npm resolves the same tree with
// --package-lock-only, which writes the lock without installing, so the check is cheap.
import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../src/paths.js";

describe("npm install on a fresh clone", () => {
  it("leaves package-lock.json byte for byte as committed", { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "fpd-lock-"));
    for (const f of ["package.json", "package-lock.json"]) copyFileSync(join(PROJECT_ROOT, f), join(dir, f));
    await new Promise<void>((resolve, reject) =>
      execFile("npm", ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir }, (err, _out, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(),
      ),
    );
    expect(readFileSync(join(dir, "package-lock.json"), "utf8")).toBe(readFileSync(join(PROJECT_ROOT, "package-lock.json"), "utf8"));
  });
});

#!/usr/bin/env node
// `npm test`: every vitest and pytest test, then both summaries together. Exit status is non-zero
// if either runner failed. Extra arguments go to both runners' filters is not supported on purpose:
// use `npm run test:ts -- <filter>` or `npm run test:py -- -k <expr>` for a subset.
import { spawnSync } from "node:child_process";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { projectPython } from "./python.mjs";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

function runner(title, cmd, argv, env = process.env) {
  console.log(`\n=== ${title} ===`);
  const t0 = Date.now();
  const r = spawnSync(cmd, argv, { cwd: ROOT, env, encoding: "utf8", stdio: ["inherit", "pipe", "inherit"], maxBuffer: 256 * 1024 * 1024 });
  process.stdout.write(r.stdout ?? "");
  const lines = (r.stdout ?? "").split("\n");
  return { title, ok: r.status === 0, seconds: (Date.now() - t0) / 1000, lines };
}

const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, "");
const vitest = runner("vitest (TypeScript)", process.execPath, [join(ROOT, "node_modules", "vitest", "vitest.mjs"), "run", "--reporter=default"], { ...process.env, FORCE_COLOR: "0" });
const pyEnv = { ...process.env, PYTHONPATH: [join(ROOT, "py"), process.env.PYTHONPATH].filter(Boolean).join(delimiter) };
const pytest = runner("pytest (Python)", projectPython(), ["-m", "pytest", "py/tests", "-p", "no:cacheprovider"], pyEnv);

console.log("\n=== summary ===");
const vSummary = vitest.lines.map(strip).filter((l) => /^\s*(Test Files|Tests)\s/.test(l));
console.log(`vitest: ${vitest.ok ? "PASS" : "FAIL"} in ${vitest.seconds.toFixed(0)} s`);
for (const l of vSummary) console.log(`  ${l.trim()}`);
const pSummary = pytest.lines.map(strip).filter((l) => /\b(passed|failed|error|no tests ran)\b/.test(l)).slice(-1);
console.log(`pytest: ${pytest.ok ? "PASS" : "FAIL"} in ${pytest.seconds.toFixed(0)} s`);
for (const l of pSummary) console.log(`  ${l.trim()}`);
process.exit(vitest.ok && pytest.ok ? 0 : 1);

// Running the real `fpd` binary from tests without blocking vitest's event loop.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

export const BIN = fileURLToPath(new URL("../../bin/run.js", import.meta.url));

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { encoding: "utf8", env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const status = err ? ((err as { code?: number | string }).code as number) ?? 1 : 0;
      resolve({ status: typeof status === "number" ? status : 1, stdout, stderr });
    });
  });
}

/**
 * `fpd <args> --json`, parsed; a non-zero exit fails with its cause: with `--json` the error
 * document `{error: {code, message, ...}}` is on stdout, anything else (a crash, the worker's
 * traceback) on stderr — both are quoted.
 */
export async function fpdJson<T = any>(args: string[], env?: NodeJS.ProcessEnv): Promise<T> {
  const r = await runCli([...args, "--json"], env);
  if (r.status !== 0) {
    const cause = [r.stdout.trim(), r.stderr.trim().split("\n").slice(-40).join("\n")].filter(Boolean).join("\n--- stderr ---\n");
    throw new Error(`fpd ${args.join(" ")} exited ${r.status}: ${cause || "(no output)"}`);
  }
  return JSON.parse(r.stdout) as T;
}

/** What several commands share: the `--set` / `--device` flags, loading experiments, sessions. */
import type { Command } from "@oclif/core";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Session, type LaunchOptions } from "../api/session.js";
import { applyOverrides, ConfigError, experiment as buildExperiment, type Experiment, type ExperimentInput } from "../dsl/index.js";
import { loadExperiment } from "../dsl/load.js";
import { FpdError } from "../protocol/errors.js";

export { deviceFlag, launchFlags, launchOf, setFlag } from "./flags.js";

/** Load a preset or file with overrides; a ConfigError ends the command with its message (exit 2). */
export async function experimentOrExit(cmd: Command, ref: string, set: string[]): Promise<Experiment> {
  try {
    const { experiment, warnings } = await loadExperiment(ref, { set });
    for (const w of warnings) cmd.warn(`${w.path}: ${w.message}`);
    return experiment;
  } catch (err) {
    if (err instanceof ConfigError) cmd.error(err.message, { exit: 2 });
    throw err;
  }
}

/** The experiment a run directory was trained with (its config.json), with overrides. */
export function runExperiment(cmd: Command, runDir: string, set: string[]): Experiment {
  const p = join(resolve(runDir), "config.json");
  if (!existsSync(p)) cmd.error(`${runDir} is not an fpdiff run directory (no config.json)`, { exit: 2 });
  const raw = JSON.parse(readFileSync(p, "utf8")).experiment as ExperimentInput;
  try {
    return set.length ? applyOverrides(raw, set) : buildExperiment(raw);
  } catch (err) {
    if (err instanceof ConfigError) cmd.error(`${p}: ${err.message}`, { exit: 2 });
    throw err;
  }
}

/**
 * Open a session, run `fn`, close it. Worker-side refusals (bad config, unreadable checkpoint)
 * end the command with their message and exit 2; a divergence with exit 3; cancellation 130.
 */
export async function withSession<T>(cmd: Command, device: string, fn: (session: Session) => Promise<T>, launch?: LaunchOptions): Promise<T> {
  const session = await Session.open({ device, ...(launch ? { launch } : {}) });
  try {
    return await fn(session);
  } catch (err) {
    if (err instanceof FpdError) {
      const exit = err.code === "CANCELLED" ? 130 : err.code === "DIVERGED" ? 3 : 2;
      cmd.error(err.message, { exit });
    }
    throw err;
  } finally {
    await session.close();
  }
}

/** Which model a command evaluates: `--run DIR` (its config and latest checkpoint) or a config + `--checkpoint`. */
import { Args, Flags, type Command } from "@oclif/core";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { RunRecord } from "../api/runs.js";
import type { Session } from "../api/session.js";
import type { Experiment } from "../dsl/index.js";
import { deviceFlag, experimentOrExit, runExperiment, setFlag } from "./common.js";

/** What every command that evaluates a model takes: which model, which weights, overrides, device. */
export const modelFlags = {
  checkpoint: Flags.string({ description: "checkpoint file (original Score SDE format or an fpdiff export)" }),
  run: Flags.string({ description: "run directory: its config.json and its latest checkpoint" }),
  weights: Flags.string({ description: "EMA weights (evaluation) or raw training weights", options: ["ema", "model"], default: "ema" }),
  set: setFlag,
  device: deviceFlag,
};

/** The points an evaluation runs on: fresh toy samples, or the first n images of a split. */
export const pointsFlags = (n: number) => ({
  n: Flags.integer({ description: "points: fresh toy samples, or the first n images of --split", default: n, min: 1 }),
  split: Flags.string({ description: "image split", options: ["test", "train"], default: "test" }),
  seed: Flags.integer({ description: "seed of the points and of the random draws", default: 0 }),
});

export const configArg = { config: Args.string({ description: "preset or experiment file (optional with --run)" }) };

export interface ModelChoice {
  experiment: Experiment;
  checkpoint: string | undefined;
}

export async function chooseModel(
  cmd: Command,
  config: string | undefined,
  flags: { checkpoint?: string | undefined; run?: string | undefined; set: string[] },
): Promise<ModelChoice> {
  if (flags.run) {
    const experiment = config ? await experimentOrExit(cmd, config, flags.set) : runExperiment(cmd, flags.run, flags.set);
    return { experiment, checkpoint: flags.checkpoint ?? latestCheckpoint(cmd, flags.run) };
  }
  if (!config) cmd.error("give a config (preset or file) with --checkpoint, or --run <run directory>", { exit: 2 });
  const experiment = await experimentOrExit(cmd, config, flags.set);
  if (!flags.checkpoint) cmd.warn("no --checkpoint: evaluating a freshly initialised network");
  return { experiment, checkpoint: flags.checkpoint };
}

function latestCheckpoint(cmd: Command, runDir: string): string {
  const dir = resolve(runDir);
  const recordPath = join(dir, "run.json");
  if (existsSync(recordPath)) {
    const record = JSON.parse(readFileSync(recordPath, "utf8")) as RunRecord;
    const best = [...record.checkpoints].filter((c) => existsSync(c.path)).sort((a, b) => b.step - a.step)[0];
    if (best) return best.path;
  }
  const meta = join(dir, "checkpoints-meta", "checkpoint.pth");
  if (existsSync(meta)) return meta;
  cmd.error(`${runDir} has no checkpoint yet`, { exit: 2 });
}

export async function loadChosen(session: Session, choice: ModelChoice): Promise<string> {
  const loaded = await session.load(choice.experiment, choice.checkpoint ? { checkpoint: choice.checkpoint } : {});
  return loaded.handle;
}

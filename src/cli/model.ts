/**
 * Commands that evaluate a model (`eval *`, `sample`): which model — `--run DIR` (its config and
 * latest checkpoint) or a config + `--checkpoint` — which weights, and the points to use.
 */
import { Args, Flags } from "@oclif/core";
import { latestRunCheckpoint, readRunExperiment } from "../api/runs.js";
import type { LaunchOptions, Session } from "../api/session.js";
import { applyOverrides, experiment as buildExperiment, type Experiment } from "../dsl/index.js";
import { ModelCommand } from "./base.js";
import { UsageError } from "./errors.js";
import { launchOf, weightsFlag, type LaunchFlagValues } from "./flags.js";
import { withInterrupt } from "./interrupt.js";
import type { ProgressLine } from "./progress.js";

/** The points an evaluation runs on: fresh toy samples, or the first n images of a split. */
export const pointsFlags = (n: number) => ({
  n: Flags.integer({ description: "points: fresh toy samples, or the first n images of --split", default: n, min: 1 }),
  split: Flags.option({ description: "image split", options: ["test", "train"] as const, default: "test" as const })(),
  seed: Flags.integer({ description: "seed of the points and of the random draws", default: 0 }),
});

export const configArg = { config: Args.string({ description: "preset or experiment file (optional with --run)" }) };

/** The sampler of `sample` and `eval fid`; absent: the experiment's sampling section. */
export const samplerFlags = {
  method: Flags.option({ description: "sampler (default: the experiment's)", options: ["pc", "ode"] as const })(),
  steps: Flags.integer({ description: "PC: discretisation steps N", min: 1 }),
};

export interface ModelChoice {
  experiment: Experiment;
  checkpoint: string | undefined;
}

export abstract class EvaluateCommand extends ModelCommand {
  static override baseFlags = {
    ...ModelCommand.baseFlags,
    checkpoint: Flags.string({ description: "checkpoint file (original Score SDE format or an fpdiff export)" }),
    run: Flags.string({ description: "run directory: its config.json and its latest checkpoint" }),
    weights: weightsFlag(),
  };

  /** The experiment and checkpoint the flags name. */
  protected async chooseModel(
    config: string | undefined,
    flags: { checkpoint?: string | undefined; run?: string | undefined; set: string[] },
  ): Promise<ModelChoice> {
    if (flags.run) {
      let experiment: Experiment;
      if (config) experiment = await this.loadExperiment(config, flags.set);
      else {
        const raw = readRunExperiment(flags.run);
        experiment = flags.set.length ? applyOverrides(raw, flags.set) : buildExperiment(raw);
      }
      const checkpoint = flags.checkpoint ?? latestRunCheckpoint(flags.run);
      if (!checkpoint) throw new UsageError(`${flags.run} has no checkpoint yet`, flags.run);
      return { experiment, checkpoint };
    }
    if (!config) throw new UsageError("give a config (preset or file) with --checkpoint, or --run <run directory>");
    const experiment = await this.loadExperiment(config, flags.set);
    if (!flags.checkpoint) this.warn("no --checkpoint: evaluating a freshly initialised network");
    return { experiment, checkpoint: flags.checkpoint };
  }

  /**
   * Open a worker session (`launch`: a job of several processes), build the chosen model in it and
   * run `fn` on its handle; the session always closes.
   */
  protected withModel<T>(choice: ModelChoice, device: string, fn: (session: Session, handle: string) => Promise<T>, launch?: LaunchOptions): Promise<T> {
    return this.withSession(
      device,
      async (session) => {
        const loaded = await session.load(choice.experiment, choice.checkpoint ? { checkpoint: choice.checkpoint } : {});
        return fn(session, loaded.handle);
      },
      launch,
    );
  }

  /**
   * `withModel` for a long, resumable op run by a job of processes (the launch flags): Ctrl-C
   * aborts it through `signal` (it stops cleanly, and running the command again continues), and
   * `line`, its progress, is cleared however it ends.
   */
  protected resumable<T>(
    choice: ModelChoice,
    flags: { device: string } & LaunchFlagValues,
    line: ProgressLine,
    fn: (session: Session, handle: string, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const run = (session: Session, handle: string) => withInterrupt((signal) => fn(session, handle, signal));
    return this.withModel(choice, flags.device, run, launchOf(flags)).finally(() => line.done());
  }
}

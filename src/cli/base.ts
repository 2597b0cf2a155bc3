/**
 * The base of every `fpd` command: `--json`, one error → exit-code mapping (src/cli/errors.ts)
 * applied alike with and without `--json`, and the session helper every command that needs a
 * worker uses. `ModelCommand` adds the base flags of commands that build a model: `--set` and
 * `--device`.
 */
import { Command, Errors } from "@oclif/core";
import type { LaunchOptions, Session } from "../api/session.js";
import type { Experiment } from "../dsl/index.js";
import { describeFailure } from "./errors.js";
import { deviceFlag, setFlag } from "./flags.js";

export abstract class FpdCommand extends Command {
  static override enableJsonFlag = true;

  /**
   * Report a failure: with `--json` one document `{error: {code, message, path?, details?}}` on
   * stdout, else the message on stderr; the exit status is the same either way.
   */
  protected override async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    if (err instanceof Errors.ExitError) throw err;
    const f = describeFailure(err);
    if (this.jsonEnabled()) {
      const { exit, ...error } = f;
      this.logJson({ error });
      process.exitCode = exit;
      return undefined;
    }
    if (f.code === "INTERNAL") throw err; // a bug: keep the stack
    if (err instanceof Errors.CLIError && f.code === "USAGE") throw err; // oclif adds its usage hints
    throw new Errors.CLIError(f.message, { exit: f.exit });
  }

  /** A preset or experiment file with `--set` overrides; lint warnings go to stderr. */
  protected async loadExperiment(ref: string, set: readonly string[]): Promise<Experiment> {
    const { loadExperiment } = await import("../dsl/load.js");
    const { experiment, warnings } = await loadExperiment(ref, { set });
    for (const w of warnings) this.warn(`${w.path}: ${w.message}`);
    return experiment;
  }

  /**
   * Open a worker session, run `fn`, and always close the session. `launch`: run the worker as a
   * job of several processes (`--nproc` / `--nnodes`; see `launchOf` in flags.ts).
   */
  protected async withSession<T>(device: string, fn: (session: Session) => Promise<T>, launch?: LaunchOptions): Promise<T> {
    const { Session } = await import("../api/session.js");
    const session = await Session.open({ device, ...(launch ? { launch } : {}) });
    try {
      return await fn(session);
    } finally {
      await session.close();
    }
  }
}

export abstract class ModelCommand extends FpdCommand {
  static override baseFlags = {
    set: setFlag,
    device: deviceFlag,
  };
}

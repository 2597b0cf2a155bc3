/** The body shared by `fpd train` and `fpd finetune`: progress, run directory, summary. */
import { Flags } from "@oclif/core";
import { defaultRunDir, runNode, type Session, type TrainOutcome } from "../api/session.js";
import type { Experiment } from "../dsl/index.js";
import { ModelCommand } from "./base.js";
import { launchFlags, launchOf, type LaunchFlagValues } from "./flags.js";
import { withInterrupt } from "./interrupt.js";
import { ProgressLine } from "./progress.js";
import { table } from "./render.js";

export interface TrainSummary {
  runDir: string;
  handle: string;
  status: string;
  step: number;
  steps: number;
  seconds: number;
  lastMetrics: TrainOutcome["result"]["lastMetrics"];
  checkpoints: TrainOutcome["result"]["checkpoints"];
}

interface TrainFlags extends LaunchFlagValues {
  device: string;
  "run-dir"?: string | undefined;
  "no-resume": boolean;
  "max-steps"?: number | undefined;
  "allow-config-change": boolean;
  "no-eval": boolean;
}

export abstract class TrainCommand extends ModelCommand {
  static override baseFlags = {
    ...ModelCommand.baseFlags,
    "run-dir": Flags.string({ description: "run directory (default runs/<experiment name>)" }),
    "no-resume": Flags.boolean({ description: "refuse to continue a run directory that already has checkpoints", default: false }),
    "max-steps": Flags.integer({ description: "stop after this many updates (resumable later)", min: 0 }),
    "allow-config-change": Flags.boolean({
      description: "continue a run whose config.json holds a different experiment (both are recorded in run.json)",
      default: false,
    }),
    "no-eval": Flags.boolean({ description: "skip held-out losses, snapshot samples / bits/dim and TensorBoard", default: false }),
    ...launchFlags,
  };

  /** Train in the run directory with a live progress line; returns the summary `--json` prints. */
  protected async trainAndReport(experiment: Experiment, flags: TrainFlags, init?: string): Promise<TrainSummary> {
    const quiet = this.jsonEnabled();
    const launch = launchOf(flags);
    if (launch && launch.nodeRank > 0) {
      // a compute-only node: its ranks follow node 0's session until the job ends
      if (!quiet) this.log(`node ${launch.nodeRank} of ${launch.nnodes}: ${launch.nproc} processes joining ${launch.rdzv}`);
      const code = await runNode(launch, { onLog: (l) => process.stderr.write(l + "\n") });
      if (code !== 0) this.error(`this node's ranks ended with exit code ${code}`, { exit: 1 });
      return { runDir: "", handle: "", status: "completed", step: 0, steps: 0, seconds: 0, lastMetrics: null, checkpoints: [] };
    }
    const runDir = flags["run-dir"] ?? defaultRunDir(experiment);
    const line = new ProgressLine(experiment.name, { quiet });
    const outcome = await this.withSession(flags.device, (session: Session) =>
      withInterrupt((signal) =>
        session.train(experiment, {
          runDir,
          signal,
          ...(flags["no-resume"] ? { resume: false } : {}),
          ...(flags["max-steps"] !== undefined ? { maxSteps: flags["max-steps"] } : {}),
          ...(flags["allow-config-change"] ? { allowConfigChange: true } : {}),
          ...(init ? { init } : {}),
          ...(flags["no-eval"] ? { evaluate: false } : {}),
          onEvent: (e) => {
            if (e.type === "progress") line.progress({ step: e.step, total: e.total, itPerSec: e.itPerSec, etaSeconds: e.etaSeconds ?? undefined });
            else if (e.type === "metrics") line.metrics({ loss: e.loss, ...e.terms, "|g|": e.gradNorm });
            else if (e.type === "checkpoint") line.note(`checkpoint (${e.kind}) step ${e.step}: ${e.path}`);
            else if (e.type === "warning") line.note(`warning: ${e.message}`);
            else if (e.type === "eval") line.note(`step ${e.step}: held-out loss ${e.loss.toPrecision(5)}`);
            else if (e.type === "samples") line.note(`step ${e.step}: ${e.n} samples in ${e.png ?? e.path}`);
            else if (e.type === "bpd") line.note(`step ${e.step}: ${e.metric} ${e.value.toFixed(4)}${e.stderr === null ? "" : ` ± ${e.stderr.toFixed(4)}`} (${e.n} test points)`);
          },
        }),
      ).finally(() => line.done()),
      launch,
    );
    const { run, handle, result } = outcome;
    if (!quiet) {
      const m = result.lastMetrics;
      this.log(`${result.status === "completed" ? "finished" : "stopped"} at step ${result.step} (${result.steps} updates in ${result.seconds.toFixed(1)} s)`);
      if (m) this.log(table([{ step: m.step, loss: m.loss, ...m.terms, "grad norm": m.gradNorm, lr: m.lr }]));
      this.log(`run directory: ${run.path}`);
      const last = run.latestCheckpoint();
      if (last) this.log(`latest checkpoint: ${last.path} (step ${last.step}, sha256 ${last.sha256.slice(0, 12)}…)`);
    }
    return {
      runDir: run.path,
      handle,
      status: result.status,
      step: result.step,
      steps: result.steps,
      seconds: result.seconds,
      lastMetrics: result.lastMetrics,
      checkpoints: result.checkpoints,
    };
  }
}

import { Flags } from "@oclif/core";
import { TOY_DEMO } from "../../configs/toy.js";
import { TOY_BUDGETS } from "../api/budgets.js";
import { logTimes, runToyJob, TOY_CONTROL, TOY_LR_SCHEDULES, TOY_METHODS, TOY_PROTOCOLS, type ToyJobResult, type ToyMethod } from "../api/toy.js";
import { ModelCommand } from "../cli/base.js";
import { UsageError } from "../cli/errors.js";
import { choiceListFlag, overrideFlag } from "../cli/flags.js";
import { withInterrupt } from "../cli/interrupt.js";
import { ProgressLine } from "../cli/progress.js";
import { table } from "../cli/render.js";

const PHASES = {
  train: "training",
  nll: "NLL by the ODE",
  density: "ODE density on a grid",
  samples: "ODE samples",
  diagnostics: "residual / score / Fisher curves along t",
} as const;

/** Comma-separated distinct non-negative integers. */
const seedsFlag = Flags.custom<number[]>({
  parse: async (input) => {
    const parts = input.split(",").map((p) => p.trim());
    const seeds = parts.map(Number);
    const bad = parts.findIndex((p, i) => p === "" || !Number.isInteger(seeds[i]) || seeds[i]! < 0);
    if (bad >= 0) throw new UsageError(`expected comma-separated non-negative integers, got ${JSON.stringify(parts[bad])} in ${JSON.stringify(input)}`);
    if (new Set(seeds).size !== seeds.length) throw new UsageError(`each seed once, got ${JSON.stringify(input)}`);
    return seeds;
  },
});

export default class Toy extends ModelCommand {
  static override summary = "The toy main job: compare losses by their ScoreODE likelihood on a toy data set, as the papers do.";
  static override description =
    "Protocol `finetune` (default): trains a first-order DSM base once, then continues copies of it for the same number of further " +
    "updates with each method, always including the control (DSM alone, same further updates); `scratch` trains every method from " +
    "scratch. Every model is scored on the same test points by the probability-flow ODE with the exact divergence (NLL in nats, " +
    "against the data's entropy floor log 32 = 3.466 for the checkerboard); each method's NLL difference to the control is paired " +
    "point by point and over seeds, with its standard error. Per model it also measures the density's mass on the checkerboard's " +
    "squares and, along log-spaced t, the absolute score-FPE residual beside ‖∂t s‖ and ‖∇φ̃‖, ‖σ(t)·s‖ against the truth's, " +
    "the score error and the ScoreODE's own Fisher divergence to the closed-form data score. Writes report.md, report.json and " +
    "PNG pictures. The defaults (the demo budget, TOY_DEMO in configs/toy.ts) are sized for about 10 minutes on 2 idle CPU cores. Interrupting " +
    "(Ctrl-C) keeps a meta checkpoint; running the same command again resumes.";
  static override examples = [
    "<%= config.bin %> toy",
    "<%= config.bin %> toy --data mog1d",
    "<%= config.bin %> toy --protocol scratch --methods dsm,order3 --steps 3000",
    "<%= config.bin %> toy --base-steps 20000 --steps 5000 --seeds 0,1,2 --out runs/toy-long --device cuda",
    "<%= config.bin %> toy --set loss.terms[1].alpha=1e-3 --json",
    "<%= config.bin %> toy --budget paper --device cuda",
  ];
  static override flags = {
    data: Flags.option({ description: "toy data set", options: ["checkerboard", "mog1d"] as const, default: "checkerboard" as const })(),
    sde: Flags.option({ description: "forward SDE", options: ["ve", "vp"] as const, default: "ve" as const })(),
    protocol: Flags.option({ description: "finetune: continue one DSM base with each method; scratch: train each from scratch", options: TOY_PROTOCOLS, default: "finetune" as const })(),
    methods: choiceListFlag(Object.keys(TOY_METHODS) as ToyMethod[])({
      description: `comma-separated, from ${Object.keys(TOY_METHODS).join(", ")} (the control ${TOY_CONTROL} is always included)`,
      default: [...TOY_DEMO.methods],
    }),
    budget: Flags.option({
      description:
        "a named budget that replaces --base-steps, --steps and --batch and runs the presets as they are (not the demo's network, " +
        "schedule and weights): paper = the high-order paper's toy, 100k updates at batch 5000 per model (finetune: a 50k DSM base " +
        "continued 50k by each method; a GPU job, the step runs as a CUDA graph)",
      options: Object.keys(TOY_BUDGETS) as (keyof typeof TOY_BUDGETS)[],
    })(),
    "base-steps": Flags.integer({ description: "finetune: updates of the DSM base", default: TOY_DEMO.baseSteps, min: 1 }),
    steps: Flags.integer({ description: "updates per method: further updates (finetune) or all (scratch)", default: TOY_DEMO.steps, min: 1 }),
    batch: Flags.integer({ description: "batch size", default: TOY_DEMO.batch, min: 1 }),
    "lr-schedule": Flags.option({
      description:
        "cosine: each run's learning rate decays to 0 over its own updates (base, then each continuation); constant: the preset's rate " +
        `(default: ${TOY_DEMO.lrSchedule}; constant with --budget)`,
      options: TOY_LR_SCHEDULES,
    })(),
    seeds: seedsFlag({ description: "comma-separated training seeds (finetune: of the continuations)", default: [...TOY_DEMO.seeds] }),
    "nll-points": Flags.integer({ description: "fresh test points for the NLL (the same for every model)", default: TOY_DEMO.nllPoints, min: 2 }),
    grid: Flags.integer({ description: "grid cells per axis for the densities and the mass on the squares", default: TOY_DEMO.grid, min: 4 }),
    samples: Flags.integer({ description: "samples drawn per model for the pictures", default: TOY_DEMO.samples, min: 1 }),
    times: Flags.integer({ description: "log-spaced times in [1e-4, 1] for the curves along t (0: none)", default: TOY_DEMO.times, min: 0 }),
    "curve-points": Flags.integer({ description: "data points per time for the curves", default: TOY_DEMO.curvePoints, min: 1 }),
    fisher: Flags.boolean({ description: "also the ScoreODE's own Fisher divergence along t (two ODE solves per time and model)", default: TOY_DEMO.fisher, allowNo: true }),
    out: Flags.string({ description: "output directory (runs, report.md, report.json, pictures)" }),
  };
  static override baseFlags = {
    ...ModelCommand.baseFlags,
    set: overrideFlag("override a field of every experiment (base and methods): path=value (repeatable)"),
  };

  async run(): Promise<ToyJobResult> {
    const { flags } = await this.parse(Toy);
    const { methods, seeds, protocol } = flags;
    // --budget: the named budget's updates, batch and overrides on the presets as they are; without
    // it the demo's settings (TOY_DEMO). The user's --set comes last either way.
    const budget = flags.budget ? TOY_BUDGETS[flags.budget] : undefined;
    const baseSteps = budget ? budget.baseSteps : flags["base-steps"];
    const steps = budget ? (protocol === "finetune" ? budget.finetuneSteps : budget.steps) : flags.steps;
    const batchSize = budget ? budget.batchSize : flags.batch;
    // The report quotes why the demo's budget is what it is only when it is the one asked for.
    const demoBudget = !budget && baseSteps === TOY_DEMO.baseSteps && steps === TOY_DEMO.steps && batchSize === TOY_DEMO.batch;
    const out = flags.out ?? `runs/toy-${flags.data}-${flags.sde}${protocol === "scratch" ? "-scratch" : ""}${budget ? `-${flags.budget}` : ""}`;
    const quiet = this.jsonEnabled();
    let line: ProgressLine | undefined;
    return this.withSession(flags.device, async (session) => {
      const result = await withInterrupt((signal) =>
        runToyJob(session, {
          data: flags.data,
          sde: flags.sde,
          protocol,
          methods,
          baseSteps,
          steps,
          batchSize,
          seeds,
          nllPoints: flags["nll-points"],
          gridPoints: flags.grid,
          samples: flags.samples,
          ...(flags.times > 0 ? { diagnostics: { times: logTimes(flags.times), points: flags["curve-points"], fisher: flags.fisher } } : {}),
          outDir: out,
          set: flags.set,
          ...(budget
            ? { jobSet: budget.set, lrSchedule: flags["lr-schedule"] ?? "constant", budgetNote: budget.note }
            : { jobSet: TOY_DEMO.set, finetuneSet: TOY_DEMO.finetuneSet, methodSet: TOY_DEMO.methodSet, lrSchedule: flags["lr-schedule"] ?? TOY_DEMO.lrSchedule }),
          ...(demoBudget && protocol === "finetune" ? { budgetNote: TOY_DEMO.why } : {}),
          signal,
          onEvent: (run, e) => {
            if (e.type === "phase") {
              line?.done();
              line = new ProgressLine(`[${run}] ${PHASES[e.phase]}`, { quiet, unit: e.phase === "train" ? "step" : "points" });
            } else if (e.type === "evalProgress") {
              line?.progress({ step: e.done, total: e.total });
              if (e.nfe > 0) line?.metrics({ "ODE evaluations": e.nfe }); // one solve covers all points: show it moving
            } else if (e.type === "progress") line?.progress({ step: e.step, total: e.total, itPerSec: e.itPerSec, etaSeconds: e.etaSeconds ?? undefined });
            else if (e.type === "metrics") line?.metrics({ loss: e.loss, ...e.terms });
            else if (e.type === "warning") line?.note(`[${run}] warning: ${e.message}`);
          },
        }),
      );
      line?.done();
      if (!quiet) {
        this.log("");
        this.log(
          table(
            result.methods.map((m) => ({
              method: m.label,
              "NLL (nats)": m.nll,
              "± s.e.": m.nllStderr,
              "Δ to control": m.name === result.control ? null : m.pairedDiffToControl,
              "± paired s.e.": m.name === result.control ? null : m.pairedDiffStderr,
              ...(m.massOnSupport !== null ? { "mass on squares": m.massOnSupport } : {}),
            })),
          ),
        );
        if (result.floor !== null) this.log(`floor (data entropy): ${result.floor.toFixed(4)} nats`);
        for (const c of result.claims) this.log(`${c.reached === null ? "–" : c.reached ? "reached" : "NOT reached"}: ${c.claim} (${c.measured})`);
        this.log(`report: ${result.report}`);
      }
      return result;
    }).finally(() => line?.done());
  }
}

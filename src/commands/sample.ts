import { Flags } from "@oclif/core";
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { UsageError } from "../cli/errors.js";
import { configArg, EvaluateCommand } from "../cli/model.js";
import { ProgressLine } from "../cli/progress.js";
import { toNpy } from "../cli/npy.js";

export default class Sample extends EvaluateCommand {
  static override summary = "Draw samples from a model with the PC sampler or the probability-flow ODE.";
  static override description =
    "PC: reverse-diffusion (or Euler–Maruyama) predictor with a Langevin corrector (snr 0.16, one step), N steps, denoised " +
    "at the end; ODE: the probability-flow ODE from T to eps. Defaults come from the experiment's sampling section. Writes " +
    "the samples as a .npy file ([n, D] for toys, [n, C, H, W] in [0, 1] for images) and, with --plot, a PNG (toys).";
  static override examples = [
    "<%= config.bin %> sample --run runs/toy_checkerboard_ve_order3 --n 5000 --out samples.npy --plot samples.png",
    "<%= config.bin %> sample ve/cifar10_ncsnpp_continuous --checkpoint checkpoint_26.pth --n 64 --method pc --device cuda --out x.npy",
  ];
  static override args = configArg;
  static override flags = {
    n: Flags.integer({ description: "number of samples", default: 1000, min: 1 }),
    seed: Flags.integer({ description: "sampling seed", default: 0 }),
    method: Flags.option({ description: "sampler (default: the experiment's)", options: ["pc", "ode"] as const })(),
    steps: Flags.integer({ description: "PC: discretisation steps N", min: 1 }),
    out: Flags.string({ description: ".npy file for the samples", default: "samples.npy" }),
    plot: Flags.string({ description: "PNG scatter of the samples (toy data)" }),
  };

  async run(): Promise<{ out: string; shape: readonly number[]; nfe: number; method: string; seconds: number; plot?: string }> {
    const { args, flags } = await this.parse(Sample);
    const choice = await this.chooseModel(args.config, flags);
    const line = new ProgressLine("sampling", { quiet: this.jsonEnabled() });
    const out = resolve(flags.out);
    const res = await this.withSession(flags.device, async (session) => {
      const handle = await this.loadChosen(session, choice);
      const drawn = await session.sample(
        handle,
        {
          n: flags.n,
          seed: flags.seed,
          weights: flags.weights,
          ...(flags.method ? { method: flags.method } : {}),
          ...(flags.steps ? { N: flags.steps } : {}),
        },
        { onEvent: (e) => line.progress({ step: e.done, total: e.total }) },
      );
      writeFileSync(out, toNpy(drawn.x));
      if (flags.plot) {
        if (drawn.x.shape.length !== 2 || drawn.x.shape[1]! > 2) throw new UsageError("--plot draws toy samples ([n, 1] or [n, 2]) only", "--plot");
        await session.request("plot.toy", { path: resolve(flags.plot), panels: [{ kind: "samples", title: choice.experiment.name, x: drawn.x }] });
      }
      return drawn;
    });
    line.done();
    if (!this.jsonEnabled()) this.log(`wrote ${out}: ${res.x.shape.join("×")} samples (${res.method}, ${res.nfe} evaluations, ${res.seconds.toFixed(1)} s)`);
    return { out, shape: res.x.shape, nfe: res.nfe, method: res.method, seconds: res.seconds, ...(flags.plot ? { plot: resolve(flags.plot) } : {}) };
  }
}

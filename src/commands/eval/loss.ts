import { Flags } from "@oclif/core";
import { given, numberFlag } from "../../cli/flags.js";
import { configArg, EvaluateCommand, pointsFlags } from "../../cli/model.js";
import { table } from "../../cli/render.js";
import type { EvalResult } from "../../api/session.js";

export default class EvalLoss extends EvaluateCommand {
  static override summary = "Each term of the experiment's loss for a model, on fresh points.";
  static override description =
    "Evaluates the loss expression of the experiment (DSM, high-order terms, score-FPE terms) term by term, every term on one " +
    "shared draw of (t, z, x_t) per batch, unweighted and as weighted into the total.";
  static override examples = [
    "<%= config.bin %> eval loss --run runs/toy_checkerboard_ve_dsm_fpe",
    "<%= config.bin %> eval loss fp/ve_cifar10 --checkpoint small.pth --set model.nf=8 --set data.path=/data/cifar10 --n 64 --t 0.5",
  ];
  static override args = configArg;
  static override flags = {
    ...pointsFlags(1000),
    t: numberFlag({ description: "evaluate every point at this time instead of drawing t" }),
    "batch-size": Flags.integer({ description: "points per batch", min: 1 }),
  };

  async run(): Promise<EvalResult<"loss">> {
    const { args, flags } = await this.parse(EvalLoss);
    const choice = await this.chooseModel(args.config, flags);
    const request = {
      kind: "loss" as const,
      weights: flags.weights,
      n: flags.n,
      split: flags.split,
      seed: flags.seed,
      ...given({ t: flags.t, batchSize: flags["batch-size"] }),
    };
    const res = await this.withModel(choice, flags.device, (session, handle) => session.evaluate(handle, request));
    if (!this.jsonEnabled()) {
      this.log(table(Object.entries(res.terms).map(([term, value]) => ({ term, value }))));
      this.log(`total ${res.loss} over ${res.n} points (${res.seconds.toFixed(1)} s)`);
    }
    return res;
  }
}

import { Flags } from "@oclif/core";
import { numberFlag } from "../../cli/flags.js";
import { configArg, EvaluateCommand, pointsFlags } from "../../cli/model.js";
import { ProgressLine } from "../../cli/progress.js";
import { table } from "../../cli/render.js";
import type { EvalResult } from "../../api/session.js";

export default class EvalBpd extends EvaluateCommand {
  static override summary = "Negative log-likelihood and bits/dim by the probability-flow ODE.";
  static override description =
    "Solves the probability-flow ODE with torchdiffeq on the model's device (dopri5, rtol = atol = 1e-5 by default, as the " +
    "originals) with the exact divergence for toy data and a Hutchinson estimate for images, uniform dequantisation and " +
    "the bpd offset of the data's scaling. Settings not given come from the experiment's eval.bpd section.";
  static override examples = [
    "<%= config.bin %> eval bpd --run runs/toy_checkerboard_ve_order3 --n 2000",
    "<%= config.bin %> eval bpd vp/cifar10_ddpmpp_continuous --checkpoint checkpoint_26.pth --set data.path=/data/cifar10 --n 1000 --repeats 5 --device cuda",
  ];
  static override args = configArg;
  static override flags = {
    ...pointsFlags(1000),
    repeats: Flags.integer({ description: "repeats (fresh dequantisation and probes)", min: 1 }),
    rtol: numberFlag({ description: "ODE relative tolerance" }),
    atol: numberFlag({ description: "ODE absolute tolerance" }),
    method: Flags.option({ description: "ODE solver", options: ["dopri5", "rk4", "euler"] as const })(),
    divergence: Flags.option({ description: "divergence estimator", options: ["exact", "hutchinson"] as const })(),
    "batch-size": Flags.integer({ description: "points per ODE solve", min: 1 }),
  };

  async run(): Promise<EvalResult<"bpd">> {
    const { args, flags } = await this.parse(EvalBpd);
    const choice = await this.chooseModel(args.config, flags);
    const line = new ProgressLine("bpd", { quiet: this.jsonEnabled(), unit: "points" });
    const res = await this.withSession(flags.device, async (session) => {
      const handle = await this.loadChosen(session, choice);
      return session.evaluate(
        handle,
        {
          kind: "bpd",
          weights: flags.weights,
          n: flags.n,
          split: flags.split,
          seed: flags.seed,
          ...(flags.repeats ? { repeats: flags.repeats } : {}),
          ...(flags.rtol !== undefined ? { rtol: flags.rtol } : {}),
          ...(flags.atol !== undefined ? { atol: flags.atol } : {}),
          ...(flags.method ? { method: flags.method } : {}),
          ...(flags.divergence ? { divergence: flags.divergence } : {}),
          ...(flags["batch-size"] ? { batchSize: flags["batch-size"] } : {}),
        },
        { onEvent: (e) => line.progress({ step: e.done, total: e.total }) },
      );
    });
    line.done();
    if (!this.jsonEnabled()) {
      const { perSample: _omit, ...shown } = res;
      this.log(table([{ nll: shown.nll, "± s.e.": shown.nllStderr, bpd: shown.bpd, "bpd ± s.e.": shown.bpdStderr, n: shown.n, repeats: shown.repeats, nfe: shown.nfe, seconds: shown.seconds }]));
    }
    return res;
  }
}

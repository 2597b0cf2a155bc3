import { Command, Flags } from "@oclif/core";
import { withSession } from "../../cli/common.js";
import { chooseModel, configArg, loadChosen, modelFlags, pointsFlags } from "../../cli/model.js";
import { ProgressLine } from "../../cli/progress.js";
import { table } from "../../cli/render.js";
import type { EvalResult } from "../../api/session.js";

export default class EvalBpd extends Command {
  static override summary = "Negative log-likelihood and bits/dim by the probability-flow ODE.";
  static override description =
    "Solves the probability-flow ODE with torchdiffeq on the model's device (dopri5, rtol = atol = 1e-5 by default, as the " +
    "originals) with the exact divergence for toy data and a Hutchinson estimate for images, uniform dequantisation and " +
    "the bpd offset of the data's scaling. Settings not given come from the experiment's eval.bpd section.";
  static override examples = [
    "<%= config.bin %> eval bpd --run runs/toy_checkerboard_ve_order3 --n 2000",
    "<%= config.bin %> eval bpd vp/cifar10_ddpmpp_continuous --checkpoint checkpoint_26.pth --set data.path=/data/cifar10 --n 1000 --repeats 5 --device cuda",
  ];
  static override enableJsonFlag = true;
  static override args = configArg;
  static override flags = {
    ...modelFlags,
    ...pointsFlags(1000),
    repeats: Flags.integer({ description: "repeats (fresh dequantisation and probes)", min: 1 }),
    rtol: Flags.string({ description: "ODE relative tolerance" }),
    atol: Flags.string({ description: "ODE absolute tolerance" }),
    method: Flags.string({ description: "ODE solver", options: ["dopri5", "rk4", "euler"] }),
    divergence: Flags.string({ description: "divergence estimator", options: ["exact", "hutchinson"] }),
    "batch-size": Flags.integer({ description: "points per ODE solve", min: 1 }),
  };

  async run(): Promise<EvalResult<"bpd">> {
    const { args, flags } = await this.parse(EvalBpd);
    const choice = await chooseModel(this, args.config, flags);
    const line = new ProgressLine("bpd", { quiet: this.jsonEnabled(), unit: "points" });
    const res = await withSession(this, flags.device, async (session) => {
      const handle = await loadChosen(session, choice);
      return session.evaluate(
        handle,
        {
          kind: "bpd",
          weights: flags.weights as "ema" | "model",
          n: flags.n,
          split: flags.split as "test" | "train",
          seed: flags.seed,
          ...(flags.repeats ? { repeats: flags.repeats } : {}),
          ...(flags.rtol ? { rtol: Number(flags.rtol) } : {}),
          ...(flags.atol ? { atol: Number(flags.atol) } : {}),
          ...(flags.method ? { method: flags.method as "dopri5" } : {}),
          ...(flags.divergence ? { divergence: flags.divergence as "exact" } : {}),
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

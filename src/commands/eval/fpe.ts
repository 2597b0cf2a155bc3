import { Flags } from "@oclif/core";
import { UsageError } from "../../cli/errors.js";
import { given, numberListFlag } from "../../cli/flags.js";
import { configArg, EvaluateCommand, pointsFlags } from "../../cli/model.js";
import { ProgressLine } from "../../cli/progress.js";
import { table } from "../../cli/render.js";
import type { EvalResult } from "../../api/session.js";

export default class EvalFpe extends EvaluateCommand {
  static override summary = "The score Fokker–Planck residual of a model along t (FP-Diffusion's central diagnostic).";
  static override description =
    "For each t, the mean norm of r = ∂t s − ∇x[(g²/2)(∇·s + ‖s‖²) − ⟨f, s⟩ − ∇·f] at perturbed points, beside the norms " +
    "of both sides and their ratio. The exact score of any data law makes r vanish; a model trained with the score-FPE " +
    "regulariser should show a smaller residual. With --plot, a PNG of residual against t.";
  static override examples = [
    "<%= config.bin %> eval fpe --run runs/toy_checkerboard_ve_dsm_fpe --t 0.001,0.01,0.1,0.5,1",
    "<%= config.bin %> eval fpe ve/cifar10_ncsnpp_continuous --checkpoint checkpoint_26.pth --set data.path=/data/cifar10 --n 16 --plot fpe.png",
  ];
  static override args = configArg;
  static override flags = {
    ...pointsFlags(500),
    t: numberListFlag({ description: "comma-separated times in (0, 1]", default: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1] }),
    div: Flags.option({ description: "divergence (default exact for toys, Hutchinson for images)", options: ["exact", "hutchinson"] as const })(),
    plot: Flags.string({ description: "write a PNG of the residual against t" }),
  };

  async run(): Promise<EvalResult<"fpeResidual">> {
    const { args, flags } = await this.parse(EvalFpe);
    const times = flags.t;
    if (times.some((t) => !(t > 0 && t <= 1))) throw new UsageError(`--t: every time must be in (0, 1], got ${times.join(",")}`, "--t");
    const choice = await this.chooseModel(args.config, flags);
    const line = new ProgressLine("fpe residual", { quiet: this.jsonEnabled(), unit: "times" });
    const request = { kind: "fpeResidual" as const, weights: flags.weights, t: times, n: flags.n, split: flags.split, seed: flags.seed, ...given({ div: flags.div }) };
    const res = await this.withModel(choice, flags.device, async (session, handle) => {
      const out = await session.evaluate(handle, request, { onEvent: line.count });
      if (flags.plot) {
        await session.request("plot.lines", {
          path: flags.plot,
          title: `score-FPE residual: ${choice.experiment.name}`,
          xlabel: "t",
          ylabel: "mean ‖residual‖",
          logx: true,
          logy: true,
          series: [
            { label: "‖∂t s − RHS‖", x: out.t, y: out.residual },
            { label: "‖RHS‖", x: out.t, y: out.rhs },
          ],
        });
      }
      return out;
    });
    line.done();
    if (!this.jsonEnabled()) {
      this.log(table(res.t.map((t, i) => ({ t, residual: res.residual[i], "‖∂t s‖": res.lhs[i], "‖RHS‖": res.rhs[i], relative: res.relative[i] }))));
      if (flags.plot) this.log(`plot: ${flags.plot}`);
    }
    return res;
  }
}

import { Flags, type Interfaces } from "@oclif/core";
import { resolve } from "node:path";
import { given, launchFlags, launchOf, numberFlag } from "../../cli/flags.js";
import { configArg, EvaluateCommand, pointsFlags, type ModelChoice } from "../../cli/model.js";
import { ProgressLine } from "../../cli/progress.js";
import { table } from "../../cli/render.js";
import type { EvalResult } from "../../api/session.js";
import type { OpEvent } from "../../protocol/ops/index.js";
import type { BpdDatasetResult } from "../../protocol/ops/scale.js";

export default class EvalBpd extends EvaluateCommand {
  static override summary = "Negative log-likelihood and bits/dim by the probability-flow ODE.";
  static override description =
    "Solves the probability-flow ODE with torchdiffeq on the model's device (dopri5, rtol = atol = 1e-5 by default, as the " +
    "originals) with the exact divergence for toy data and a Hutchinson estimate for images, uniform dequantisation and " +
    "the bpd offset of the data's scaling. Settings not given come from the experiment's eval.bpd section. With --dataset " +
    "it covers a whole split (every image, --repeats times), sharded over the --nproc processes, resumable from --out " +
    "(per-batch results are appended; Ctrl-C and running the same command again continues).";
  static override examples = [
    "<%= config.bin %> eval bpd --run runs/toy_checkerboard_ve_order3 --n 2000",
    "<%= config.bin %> eval bpd vp/cifar10_ddpmpp_continuous --checkpoint checkpoint_26.pth --set data.path=/data/cifar10 --n 1000 --repeats 5 --device cuda",
    "<%= config.bin %> eval bpd --run runs/highorder_ve_cifar10_order3 --dataset test --repeats 5 --nproc 8 --device cuda --out bpd-test",
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
    dataset: Flags.option({ description: "whole-split mode: every image of this split (resumable, sharded over --nproc)", options: ["test", "train"] as const })(),
    out: Flags.string({ description: "whole-split mode: output directory (default bpd-<split>-<seed>)" }),
    "no-dequantize": Flags.boolean({ description: "whole-split mode: no uniform dequantisation (Score SDE's README figures)", default: false }),
    probe: Flags.option({ description: "whole-split mode: Hutchinson probe", options: ["rademacher", "gaussian"] as const })(),
    steps: Flags.integer({ description: "whole-split mode: fixed steps over [eps, 1] for --method rk4 | euler (default 100)", min: 1 }),
    ...launchFlags,
  };

  async run(): Promise<EvalResult<"bpd"> | BpdDatasetResult> {
    const { args, flags } = await this.parse(EvalBpd);
    const choice = await this.chooseModel(args.config, flags);
    if (flags.dataset) return this.wholeSplit(choice, flags.dataset, flags);
    const line = new ProgressLine("bpd", { quiet: this.jsonEnabled(), unit: "points" });
    const request = {
      kind: "bpd" as const,
      weights: flags.weights,
      n: flags.n,
      split: flags.split,
      seed: flags.seed,
      ...given({ repeats: flags.repeats, rtol: flags.rtol, atol: flags.atol, method: flags.method, divergence: flags.divergence, batchSize: flags["batch-size"] }),
    };
    const res = await this.withModel(choice, flags.device, (session, handle) => session.evaluate(handle, request, { onEvent: line.count }), launchOf(flags));
    line.done();
    if (!this.jsonEnabled()) {
      const { perSample: _omit, ...shown } = res;
      this.log(table([{ nll: shown.nll, "± s.e.": shown.nllStderr, bpd: shown.bpd, "bpd ± s.e.": shown.bpdStderr, n: shown.n, repeats: shown.repeats, nfe: shown.nfe, seconds: shown.seconds }]));
    }
    return res;
  }

  private async wholeSplit(choice: ModelChoice, split: "test" | "train", flags: Interfaces.InferredFlags<typeof EvalBpd.flags & typeof EvalBpd.baseFlags>): Promise<BpdDatasetResult> {
    const out = resolve(flags.out ?? `bpd-${split}-${flags.seed}`);
    const line = new ProgressLine(`bpd (${split})`, { quiet: this.jsonEnabled(), unit: "images" });
    const request = {
      weights: flags.weights,
      dataset: split,
      out,
      seed: flags.seed,
      ...given({ repeats: flags.repeats, rtol: flags.rtol, atol: flags.atol, solver: flags.method, probe: flags.probe, steps: flags.steps, batchSize: flags["batch-size"] }),
      ...(flags["no-dequantize"] ? { dequantize: false } : {}),
    };
    const onEvent = (e: OpEvent<"eval.bpd_dataset">) => {
      if (e.bpd != null) line.metrics({ bpd: e.bpd, "s.e.": e.stderr ?? NaN, nfe: e.nfe ?? NaN });
      line.count(e);
    };
    const res = await this.resumable(choice, flags, line, (session, handle, signal) => session.bpdDataset(handle, request, { signal, onEvent }));
    if (!this.jsonEnabled()) {
      this.log(table(res.repeats.map((r) => ({ repeat: r.repeat, images: r.images, bpd: r.bpd ?? NaN, "s.e.": r.stderr ?? NaN }))));
      this.log(`bpd ${res.bpd?.toFixed(4)} ± ${res.stderr?.toFixed(4)} over ${res.images} images × ${res.repeats.length} repeats; NFE mean ${res.nfe.mean?.toFixed(1)} (${res.nfe.min}–${res.nfe.max}); ${res.out}/result.json`);
    }
    return res;
  }
}

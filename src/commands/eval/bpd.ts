import { Command, Flags, type Interfaces } from "@oclif/core";
import { resolve } from "node:path";
import { launchFlags, launchOf, withSession } from "../../cli/common.js";
import { withInterrupt } from "../../cli/interrupt.js";
import { chooseModel, configArg, loadChosen, modelFlags, pointsFlags } from "../../cli/model.js";
import { ProgressLine } from "../../cli/progress.js";
import { table } from "../../cli/render.js";
import type { EvalResult } from "../../api/session.js";
import type { BpdDatasetResult } from "../../protocol/ops/scale.js";

export default class EvalBpd extends Command {
  static override summary = "Negative log-likelihood and bits/dim by the probability-flow ODE.";
  static override description =
    "Solves the probability-flow ODE with torchdiffeq on the model's device (dopri5, rtol = atol = 1e-5 by default, as the " +
    "originals) with the exact divergence for toy data and a Hutchinson estimate for images, uniform dequantisation and " +
    "the bpd offset of the data's scaling. Settings not given come from the experiment's eval.bpd section. With --dataset " +
    "it runs over the whole split (CIFAR-10 test set, ImageNet32 validation set), batched, split over the processes of " +
    "the job (--nproc), logged per batch in --out so that Ctrl-C and re-running continues, and writes result.json " +
    "(per-repeat means and s.e., NFE distribution, solver, tolerances, dequantisation, offset convention).";
  static override examples = [
    "<%= config.bin %> eval bpd --run runs/toy_checkerboard_ve_order3 --n 2000",
    "<%= config.bin %> eval bpd vp/cifar10_ddpmpp_continuous --checkpoint checkpoint_26.pth --set data.path=/data/cifar10 --n 1000 --repeats 5 --device cuda",
    "<%= config.bin %> eval bpd --run runs/highorder_ve_cifar10_order3 --dataset test --repeats 5 --nproc 8 --device cuda --out bpd-test",
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
    dataset: Flags.string({ description: "whole-split mode: every image of this split (resumable, sharded over --nproc)", options: ["test", "train"] }),
    out: Flags.string({ description: "whole-split mode: output directory (default bpd-<split>-<seed>)" }),
    "no-dequantize": Flags.boolean({ description: "no uniform dequantisation (Score SDE's README figures)", default: false }),
    probe: Flags.string({ description: "Hutchinson probe", options: ["rademacher", "gaussian"] }),
    ...launchFlags,
  };

  async run(): Promise<EvalResult<"bpd"> | BpdDatasetResult> {
    const { args, flags } = await this.parse(EvalBpd);
    const choice = await chooseModel(this, args.config, flags);
    if (flags.dataset) return this.wholeSplit(choice, flags);
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

  private async wholeSplit(choice: Awaited<ReturnType<typeof chooseModel>>, flags: Interfaces.InferredFlags<typeof EvalBpd.flags>): Promise<BpdDatasetResult> {
    const split = flags.dataset as "test" | "train";
    const out = resolve(flags.out ?? `bpd-${split}-${flags.seed}`);
    const line = new ProgressLine(`bpd (${split})`, { quiet: this.jsonEnabled(), unit: "images" });
    const res = await withSession(
      this,
      flags.device,
      async (session) => {
        const handle = await loadChosen(session, choice);
        return withInterrupt((signal) =>
          session.bpdDataset(
            handle,
            {
              weights: flags.weights as "ema" | "model",
              dataset: split,
              out,
              seed: flags.seed,
              ...(flags.repeats ? { repeats: flags.repeats } : {}),
              ...(flags.rtol ? { rtol: Number(flags.rtol) } : {}),
              ...(flags.atol ? { atol: Number(flags.atol) } : {}),
              ...(flags.method ? { solver: flags.method as "dopri5" } : {}),
              ...(flags.probe ? { probe: flags.probe as "rademacher" | "gaussian" } : {}),
              ...(flags["no-dequantize"] ? { dequantize: false } : {}),
              ...(flags["batch-size"] ? { batchSize: flags["batch-size"] } : {}),
            },
            {
              signal,
              onEvent: (e) => {
                if (e.bpd != null) line.metrics({ bpd: e.bpd, "s.e.": e.stderr ?? NaN, nfe: e.nfe ?? NaN });
                line.progress({ step: e.done, total: e.total });
              },
            },
          ),
        );
      },
      launchOf(flags),
    ).finally(() => line.done());
    if (!this.jsonEnabled()) {
      this.log(table(res.repeats.map((r) => ({ repeat: r.repeat, images: r.images, bpd: r.bpd ?? NaN, "s.e.": r.stderr ?? NaN }))));
      this.log(`bpd ${res.bpd?.toFixed(4)} ± ${res.stderr?.toFixed(4)} over ${res.images} images × ${res.repeats.length} repeats; NFE mean ${res.nfe.mean?.toFixed(1)} (${res.nfe.min}–${res.nfe.max}); ${res.out}/result.json`);
    }
    return res;
  }
}

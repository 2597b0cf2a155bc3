import { Flags, type Interfaces } from "@oclif/core";
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { UsageError } from "../cli/errors.js";
import { given, launchFlags, launchOf } from "../cli/flags.js";
import { configArg, EvaluateCommand, samplerFlags, type ModelChoice } from "../cli/model.js";
import { ProgressLine } from "../cli/progress.js";
import { toNpy } from "../cli/npy.js";
import type { OpResult } from "../protocol/ops/index.js";

/** What `fpd sample` (without --num) reports. */
export interface SampleSummary {
  out: string;
  shape: readonly number[];
  nfe: number;
  method: string;
  seconds: number;
  plot?: string;
}

export default class Sample extends EvaluateCommand {
  static override summary = "Draw samples from a model with the PC sampler or the probability-flow ODE.";
  static override description =
    "PC: reverse-diffusion (or Euler–Maruyama) predictor with a Langevin corrector (snr 0.16, one step), N steps, denoised " +
    "at the end; ODE: the probability-flow ODE from T to eps. Defaults come from the experiment's sampling section. Writes " +
    "the samples as a .npy file ([n, D] for toys, [n, C, H, W] in [0, 1] for images) and, with --plot, a PNG (toys). " +
    "With --num, samples at scale: batches split over the processes of the job (--nproc), one .npz shard per batch " +
    "(uint8 NHWC images) in --shards plus grid.png, reproducible per seed whatever the number of processes, resumable.";
  static override examples = [
    "<%= config.bin %> sample --run runs/toy_checkerboard_ve_order3 --n 5000 --out samples.npy --plot samples.png",
    "<%= config.bin %> sample ve/cifar10_ncsnpp_continuous --checkpoint checkpoint_26.pth --n 64 --method pc --device cuda --out x.npy",
    "<%= config.bin %> sample --run runs/highorder_ve_cifar10_order3 --num 50000 --batch-size 500 --nproc 8 --device cuda --shards samples-0",
  ];
  static override args = configArg;
  static override flags = {
    n: Flags.integer({ description: "number of samples", default: 1000, min: 1 }),
    seed: Flags.integer({ description: "sampling seed", default: 0 }),
    ...samplerFlags,
    out: Flags.string({ description: ".npy file for the samples", default: "samples.npy" }),
    plot: Flags.string({ description: "PNG scatter of the samples (toy data)" }),
    num: Flags.integer({ description: "samples at scale: this many, in .npz shards (see --shards)", min: 1 }),
    shards: Flags.string({ description: "with --num: output directory (default samples-<seed>)" }),
    "batch-size": Flags.integer({ description: "with --num: samples per shard", min: 1 }),
    ...launchFlags,
  };

  async run(): Promise<SampleSummary | OpResult<"sample.shards">> {
    const { args, flags } = await this.parse(Sample);
    const choice = await this.chooseModel(args.config, flags);
    if (flags.num !== undefined) return this.atScale(choice, flags.num, flags);
    const line = new ProgressLine("sampling", { quiet: this.jsonEnabled() });
    const out = resolve(flags.out);
    const res = await this.withModel(
      choice,
      flags.device,
      async (session, handle) => {
        const request = { n: flags.n, seed: flags.seed, weights: flags.weights, ...given({ method: flags.method, N: flags.steps }) };
        const drawn = await session.sample(handle, request, { onEvent: line.count });
        writeFileSync(out, toNpy(drawn.x));
        if (flags.plot) {
          if (drawn.x.shape.length !== 2 || drawn.x.shape[1]! > 2) throw new UsageError("--plot draws toy samples ([n, 1] or [n, 2]) only", "--plot");
          await session.request("plot.toy", { path: resolve(flags.plot), panels: [{ kind: "samples", title: choice.experiment.name, x: drawn.x }] });
        }
        return drawn;
      },
      launchOf(flags),
    );
    line.done();
    if (!this.jsonEnabled()) this.log(`wrote ${out}: ${res.x.shape.join("×")} samples (${res.method}, ${res.nfe} evaluations, ${res.seconds.toFixed(1)} s)`);
    return { out, shape: res.x.shape, nfe: res.nfe, method: res.method, seconds: res.seconds, ...(flags.plot ? { plot: resolve(flags.plot) } : {}) };
  }

  private async atScale(choice: ModelChoice, num: number, flags: Interfaces.InferredFlags<typeof Sample.flags & typeof Sample.baseFlags>): Promise<OpResult<"sample.shards">> {
    const out = resolve(flags.shards ?? `samples-${flags.seed}`);
    const line = new ProgressLine("sampling", { quiet: this.jsonEnabled(), unit: "samples" });
    const request = { n: num, seed: flags.seed, out, weights: flags.weights, ...given({ batchSize: flags["batch-size"], method: flags.method, N: flags.steps }) };
    const res = await this.resumable(choice, flags, line, (session, handle, signal) => session.sampleShards(handle, request, { signal, onEvent: line.count }));
    if (!this.jsonEnabled()) this.log(`wrote ${res.n} samples in ${res.shards.length} shards under ${res.out}${res.grid ? `; grid ${res.grid}` : ""}`);
    return res;
  }
}

import { Flags } from "@oclif/core";
import { resolve } from "node:path";
import type { FidResult } from "../../protocol/ops/scale.js";
import { given, launchFlags } from "../../cli/flags.js";
import { configArg, EvaluateCommand, samplerFlags } from "../../cli/model.js";
import { ProgressLine } from "../../cli/progress.js";
import { table } from "../../cli/render.js";

export default class EvalFid extends EvaluateCommand {
  static override summary = "FID, Inception score and KID of a model's samples, without TensorFlow.";
  static override description =
    "Samples --num images in batches on every process of the job (resumable: units are logged in --out as they finish; " +
    "Ctrl-C and re-running continues), extracts Inception pool3 features and logits with pytorch-fid's port of the TF " +
    "Inception 2015-12-05 network, and compares with reference statistics: Score SDE's cifar10_stats.npz / " +
    "imagenet32_stats.npz (pool_3 activations: FID and KID) or pytorch-fid's mu/sigma files (FID), or your own from " +
    "`fpd eval fid-stats`. The weights pt_inception-2015-12-05-6726825d.pth are looked for at --inception, FPD_INCEPTION " +
    "and torch.hub's cache; they cannot be downloaded by fpdiff.";
  static override examples = [
    "<%= config.bin %> eval fid --run runs/fp_ve_cifar10 --num 50000 --stats assets/stats/cifar10_stats.npz --nproc 8 --device cuda",
    "<%= config.bin %> eval fid vp/cifar10_ddpmpp_continuous --checkpoint checkpoint_26.pth --num 1000 --stats cifar10_stats.npz --inception pt_inception-2015-12-05-6726825d.pth",
  ];
  static override args = configArg;
  static override flags = {
    ...launchFlags,
    num: Flags.integer({ description: "number of samples", default: 50000, min: 2 }),
    stats: Flags.string({ description: "reference statistics (.npz: pool_3, or mu and sigma)", required: true }),
    out: Flags.string({ description: "output directory (units, manifest; default fid-<seed>)" }),
    seed: Flags.integer({ description: "sampling seed", default: 0 }),
    "batch-size": Flags.integer({ description: "samples per unit (per process and round)", min: 1 }),
    inception: Flags.string({ description: "pt_inception-2015-12-05-6726825d.pth (else FPD_INCEPTION, torch.hub's cache)" }),
    resize: Flags.option({ description: "299×299 resize: TF 1.x bilinear (as TF-GAN) or PyTorch's", options: ["tf1", "pytorch"] as const, default: "tf1" as const })(),
    "keep-samples": Flags.boolean({ description: "keep the samples (uint8) in the units as well as the features", default: false }),
    ...samplerFlags,
  };

  async run(): Promise<FidResult> {
    const { args, flags } = await this.parse(EvalFid);
    const choice = await this.chooseModel(args.config, flags);
    const line = new ProgressLine("fid", { quiet: this.jsonEnabled(), unit: "samples" });
    const out = resolve(flags.out ?? `fid-${flags.seed}`);
    const request = {
      weights: flags.weights,
      n: flags.num,
      seed: flags.seed,
      out,
      stats: flags.stats,
      resize: flags.resize,
      keepSamples: flags["keep-samples"],
      ...(flags.inception ? { inception: flags.inception } : {}),
      ...given({ batchSize: flags["batch-size"], method: flags.method, N: flags.steps }),
    };
    const res = await this.resumable(choice, flags, line, (session, handle, signal) => session.fid(handle, request, { signal, onEvent: line.count }));
    if (!this.jsonEnabled()) {
      this.log(table([{ FID: res.fid, IS: res.inceptionScore, "IS (10 splits)": `${res.inceptionScore10.mean.toFixed(3)} ± ${res.inceptionScore10.std.toFixed(3)}`, KID: res.kid ? res.kid.mean : "n/a (no pool_3)", n: res.n, "NFE/unit": res.nfe.mean ?? 0 }]));
      if (res.warning) this.warn(res.warning);
      this.log(`units and manifest: ${res.out}`);
    }
    return res;
  }
}

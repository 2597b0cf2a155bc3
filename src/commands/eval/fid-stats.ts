import { Flags } from "@oclif/core";
import { resolve } from "node:path";
import { FpdCommand } from "../../cli/base.js";
import { deviceFlag, given, launchFlags, launchOf } from "../../cli/flags.js";
import { withInterrupt } from "../../cli/interrupt.js";
import { ProgressLine } from "../../cli/progress.js";
import type { OpResult } from "../../protocol/ops/index.js";

export default class EvalFidStats extends FpdCommand {
  static override summary = "Reference statistics of a data set for FID / KID (pool3 activations, mean, covariance).";
  static override description =
    "Runs pytorch-fid's Inception (TF 2015-12-05 port) over every image of a split, as stored (uint8), and writes an .npz " +
    "with mu, sigma and n (pytorch-fid's form) and pool_3 (Score SDE's form, needed for KID). Resumable: units are kept in " +
    "<out>.parts/ until the file is written.";
  static override examples = [
    "<%= config.bin %> eval fid-stats --dataset cifar10 --data /data/cifar-10-batches-py --split train --out cifar10_train_stats.npz --device cuda",
  ];
  static override flags = {
    dataset: Flags.option({ description: "data set", options: ["cifar10", "imagenet32"] as const, required: true })(),
    data: Flags.string({ description: "where it is (default: FPD_DATA_DIR)" }),
    split: Flags.option({ description: "split", options: ["train", "test"] as const, default: "train" as const })(),
    n: Flags.integer({ description: "only the first n images", min: 1 }),
    out: Flags.string({ description: "statistics file (.npz)", required: true }),
    "batch-size": Flags.integer({ description: "images per unit (default 500)", min: 1 }),
    "no-pool": Flags.boolean({ description: "store mu and sigma only (no KID against this file)", default: false }),
    inception: Flags.string({ description: "pt_inception-2015-12-05-6726825d.pth (else FPD_INCEPTION, torch.hub's cache)" }),
    resize: Flags.option({ description: "299×299 resize", options: ["tf1", "pytorch"] as const, default: "tf1" as const })(),
    device: deviceFlag,
    ...launchFlags,
  };

  async run(): Promise<OpResult<"eval.fid_stats">> {
    const { flags } = await this.parse(EvalFidStats);
    const line = new ProgressLine("fid-stats", { quiet: this.jsonEnabled(), unit: "images" });
    const request = {
      data: { kind: flags.dataset, ...(flags.data ? { path: resolve(flags.data) } : {}) },
      split: flags.split,
      out: flags.out,
      keepPool: !flags["no-pool"],
      resize: flags.resize,
      ...given({ batchSize: flags["batch-size"], n: flags.n }),
      ...(flags.inception ? { inception: flags.inception } : {}),
    };
    const res = await this.withSession(
      flags.device,
      (session) => withInterrupt((signal) => session.fidStats(request, { signal, onEvent: line.count })),
      launchOf(flags),
    ).finally(() => line.done());
    if (!this.jsonEnabled()) this.log(`wrote ${res.path} (${res.n} images of ${flags.dataset} ${res.split}${res.inception.verified ? "" : "; NOT the official Inception weights"})`);
    return res;
  }
}

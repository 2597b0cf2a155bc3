import { existsSync } from "node:fs";
import { Flags } from "@oclif/core";
import { UsageError } from "../cli/errors.js";
import { experimentArg } from "../cli/flags.js";
import { TrainCommand, type TrainSummary } from "../cli/train.js";

export default class Finetune extends TrainCommand {
  static override summary = "Fine-tune from an original Score SDE checkpoint with an experiment's loss.";
  static override description =
    "Starts from the checkpoint's model, EMA, Adam state and step, as FP-Diffusion and high-order DSM did, and continues " +
    "training with the experiment (e.g. fp/ve_cifar10 or highorder/ve_cifar10_order2). The file is loaded safely (no " +
    "unpickling of arbitrary objects) and must match the experiment's network exactly; a mismatch names the preset it fits.";
  static override examples = [
    "<%= config.bin %> finetune fp/ve_cifar10 --from exp/ve/cifar10_ncsnpp_continuous/checkpoints/checkpoint_26.pth --set data.path=/data/cifar10",
    "<%= config.bin %> finetune highorder/ve_cifar10_order2 --from small.pth --set model.nf=8 --max-steps 2",
  ];
  static override flags = {
    from: Flags.string({ description: "original-format checkpoint to start from", required: true }),
  };

  static override args = experimentArg;

  async run(): Promise<TrainSummary> {
    const { args, flags } = await this.parse(Finetune);
    // before the run directory is touched: a typo here must not look like a config change there
    if (!existsSync(flags.from)) throw new UsageError(`--from: no such file ${flags.from}`, "--from");
    const experiment = await this.loadExperiment(args.config, flags.set);
    return this.trainAndReport(experiment, flags, flags.from);
  }
}

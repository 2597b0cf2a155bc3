import { Args, Command } from "@oclif/core";
import { experimentOrExit } from "../cli/common.js";
import { trainAndReport, trainFlags, type TrainSummary } from "../cli/train.js";

export default class Train extends Command {
  static override summary = "Train an experiment (a preset or a .ts / .json file) in a run directory.";
  static override description =
    "Writes runs/<name>/ with config.json, metrics.jsonl, run.json (the checkpoint registry), and the original Score SDE " +
    "checkpoint layout (checkpoints/checkpoint_<k>.pth, checkpoints-meta/checkpoint.pth). Running it again continues from " +
    "the meta checkpoint. Ctrl-C writes a meta checkpoint and stops (exit 130); a NaN/Inf loss stops with the last good " +
    "checkpoint intact (exit 3).";
  static override examples = [
    "<%= config.bin %> train toy/checkerboard_ve_order3 --set training.nIters=2000 --set training.batchSize=1000",
    "<%= config.bin %> train ./my_experiment.ts --run-dir runs/mine --max-steps 500",
    "<%= config.bin %> train fp/ve_cifar10 --set data.path=/data/cifar-10-batches-py --device cuda --json",
  ];
  static override enableJsonFlag = true;
  static override args = { config: Args.string({ description: "preset name, or a .ts / .json experiment file", required: true }) };
  static override flags = trainFlags;

  async run(): Promise<TrainSummary> {
    const { args, flags } = await this.parse(Train);
    const experiment = await experimentOrExit(this, args.config, flags.set);
    return trainAndReport(this, experiment, flags);
  }
}

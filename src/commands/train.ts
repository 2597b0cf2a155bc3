import { experimentArg } from "../cli/flags.js";
import { TrainCommand, type TrainSummary } from "../cli/train.js";

export default class Train extends TrainCommand {
  static override summary = "Train an experiment (a preset or a .ts / .json file) in a run directory.";
  static override description =
    "Writes runs/<name>/ with config.json, metrics.jsonl, run.json (the checkpoint registry), and the original Score SDE " +
    "checkpoint layout (checkpoints/checkpoint_<k>.pth, checkpoints-meta/checkpoint.pth). Running it again continues from " +
    "the meta checkpoint (or, when that is missing or unreadable, from the newest intact snapshot); a changed experiment " +
    "is refused unless --allow-config-change. One process trains in a run directory at a time (a second one exits 4, " +
    "naming the first). Ctrl-C writes a meta checkpoint and stops (exit 130); a NaN/Inf loss stops with the last good " +
    "checkpoint intact (exit 3).";
  static override examples = [
    "<%= config.bin %> train toy/checkerboard_ve_order3 --set training.nIters=2000 --set training.batchSize=1000",
    "<%= config.bin %> train ./my_experiment.ts --run-dir runs/mine --max-steps 500",
    "<%= config.bin %> train fp/ve_cifar10 --set data.path=/data/cifar-10-batches-py --device cuda --json",
  ];

  static override args = experimentArg;

  async run(): Promise<TrainSummary> {
    const { args, flags } = await this.parse(Train);
    const experiment = await this.loadExperiment(args.config, flags.set);
    return this.trainAndReport(experiment, flags);
  }
}

import { Args, Flags } from "@oclif/core";
import { scoreCheckpoint, type CheckpointScores } from "../../api/checkpoints.js";
import { ModelCommand } from "../../cli/base.js";
import { weightsFlag } from "../../cli/flags.js";

export default class CkptScore extends ModelCommand {
  static override summary = "Evaluate a checkpoint's network and score at given inputs.";
  static override description =
    "Restores the checkpoint (PyTorch Score SDE, a plain export, or a score_flow / score_sde JAX flax state) strictly into " +
    "the preset's network and writes an .npz with `output` (the raw network output for the label the SDE feeds it: σ(t) " +
    "for VE, 999·t for VP/subVP), `score`, `labels` and `t`. --input is a .pt or .npz holding x [B, C, H, W] (with " +
    "--layout nhwc: [B, H, W, C], as the JAX code, and the outputs are written so too) and t [B] (or one number).";
  static override examples = [
    "<%= config.bin %> ckpt score checkpoint_26.pth --preset ve/cifar10_ncsnpp_continuous --input batch.npz --out scores.npz",
    "<%= config.bin %> ckpt score small.pth --preset ve/cifar10_ncsnpp_continuous --set model.nf=8 --input io.pt --out s.npz --weights model",
    "<%= config.bin %> ckpt score cifar10_vp_likelihood/checkpoints/checkpoint_26 --preset scoreflow/vp/cifar10_ddpmpp_continuous --input x.npz --out s.npz",
  ];
  static override args = { file: Args.string({ description: "checkpoint file", required: true }) };
  static override flags = {
    preset: Flags.string({ description: "preset name, or a .ts / .json experiment file", required: true }),
    input: Flags.string({ description: ".pt or .npz with x and t", required: true }),
    out: Flags.string({ description: ".npz to write", required: true }),
    weights: weightsFlag("EMA (evaluation) or raw training weights"),
    "batch-size": Flags.integer({ description: "inputs per forward pass", default: 64, min: 1 }),
    layout: Flags.option({ description: "layout of x and of the written arrays", options: ["nchw", "nhwc"] as const, default: "nchw" as const })(),
  };

  async run(): Promise<CheckpointScores> {
    const { args, flags } = await this.parse(CkptScore);
    const experiment = await this.loadExperiment(flags.preset, flags.set);
    const res = await this.withSession(flags.device, (session) =>
      scoreCheckpoint(session, {
        experiment,
        checkpoint: args.file,
        input: flags.input,
        out: flags.out,
        weights: flags.weights,
        batchSize: flags["batch-size"],
        layout: flags.layout,
      }),
    );
    if (!this.jsonEnabled()) this.log(`wrote ${res.out}: ${res.n} inputs, ${res.weights} weights of step ${res.step}`);
    return res;
  }
}

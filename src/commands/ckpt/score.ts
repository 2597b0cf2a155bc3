import { Args, Command, Flags } from "@oclif/core";
import { scoreCheckpoint, type CheckpointScores } from "../../api/checkpoints.js";
import { Session } from "../../api/session.js";
import { ConfigError } from "../../dsl/index.js";
import { loadExperiment } from "../../dsl/load.js";
import { FpdError } from "../../protocol/errors.js";
import { setFlag, deviceFlag } from "../../cli/common.js";

export default class CkptScore extends Command {
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
  static override enableJsonFlag = true;
  static override args = { file: Args.string({ description: "checkpoint file", required: true }) };
  static override flags = {
    preset: Flags.string({ description: "preset name, or a .ts / .json experiment file", required: true }),
    set: setFlag,
    input: Flags.string({ description: ".pt or .npz with x and t", required: true }),
    out: Flags.string({ description: ".npz to write", required: true }),
    weights: Flags.string({ description: "EMA (evaluation) or raw training weights", options: ["ema", "model"], default: "ema" }),
    device: deviceFlag,
    "batch-size": Flags.integer({ description: "inputs per forward pass", default: 64 }),
    layout: Flags.string({ description: "layout of x and of the written arrays", options: ["nchw", "nhwc"], default: "nchw" }),
  };

  async run(): Promise<CheckpointScores> {
    const { args, flags } = await this.parse(CkptScore);
    let experiment;
    try {
      ({ experiment } = await loadExperiment(flags.preset, { set: flags.set }));
    } catch (err) {
      if (err instanceof ConfigError) this.error(err.message, { exit: 2 });
      throw err;
    }
    const session = await Session.open({ device: flags.device });
    try {
      const res = await scoreCheckpoint(session, {
        experiment,
        checkpoint: args.file,
        input: flags.input,
        out: flags.out,
        weights: flags.weights as "ema" | "model",
        batchSize: flags["batch-size"],
        layout: flags.layout as "nchw" | "nhwc",
      });
      if (!this.jsonEnabled()) this.log(`wrote ${res.out}: ${res.n} inputs, ${res.weights} weights of step ${res.step}`);
      return res;
    } catch (err) {
      if (err instanceof FpdError) this.error(err.message, { exit: 2 });
      throw err;
    } finally {
      await session.close();
    }
  }
}

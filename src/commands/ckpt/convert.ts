import { Args, Command, Flags } from "@oclif/core";
import { convertCheckpoint, type ConvertedCheckpoint } from "../../api/checkpoints.js";
import { Session } from "../../api/session.js";
import { ConfigError, type Experiment } from "../../dsl/index.js";
import { loadExperiment } from "../../dsl/load.js";
import { FpdError } from "../../protocol/errors.js";
import { setFlag } from "../../cli/common.js";

export default class CkptConvert extends Command {
  static override summary = "Convert any accepted checkpoint to the PyTorch Score SDE format or a plain state-dict export.";
  static override description =
    "Reads PyTorch Score SDE checkpoints, plain exports and the flax states of score_flow / score_sde (JAX) / mle_score_ode. " +
    "--to safetensors | state_dict writes the network's weights (EMA by default) as a flat state dict; --to score_sde writes " +
    "the PyTorch training format ({optimizer, model, ema, step}, 'module.' keys) that score_sde_pytorch's restore_checkpoint " +
    "loads with strict=True (from a flax state: the raw weights, the EMA, the Adam moments and the step). The architecture " +
    "is recognised from the file's layout; pass --preset (and --set) when it matches no preset.";
  static override examples = [
    "<%= config.bin %> ckpt convert checkpoint_26.pth --to safetensors --out ve_ema.safetensors",
    "<%= config.bin %> ckpt convert ve_ema.safetensors --to score_sde --out checkpoint_0.pth",
    "<%= config.bin %> ckpt convert cifar10_vp_likelihood/checkpoints/checkpoint_26 --to score_sde --out checkpoint_26.pth",
  ];
  static override enableJsonFlag = true;
  static override args = { file: Args.string({ description: "checkpoint or export", required: true }) };
  static override flags = {
    to: Flags.string({ description: "target format", options: ["safetensors", "state_dict", "score_sde"], required: true }),
    out: Flags.string({ description: "file to write", required: true }),
    weights: Flags.string({ description: "which weights to export", options: ["ema", "model"], default: "ema" }),
    preset: Flags.string({ description: "preset or experiment file, when the layout matches no preset" }),
    set: setFlag,
  };

  async run(): Promise<ConvertedCheckpoint> {
    const { args, flags } = await this.parse(CkptConvert);
    let experiment: Experiment | undefined;
    if (flags.preset) {
      try {
        ({ experiment } = await loadExperiment(flags.preset, { set: flags.set }));
      } catch (err) {
        if (err instanceof ConfigError) this.error(err.message, { exit: 2 });
        throw err;
      }
    }
    const session = await Session.open({ device: "cpu" });
    try {
      const res = await convertCheckpoint(session, {
        path: args.file,
        out: flags.out,
        to: flags.to as "safetensors" | "state_dict" | "score_sde",
        weights: flags.weights as "ema" | "model",
        ...(experiment ? { experiment } : {}),
      });
      if (!this.jsonEnabled()) this.log(`wrote ${res.path} (${res.format}, ${res.bytes.toLocaleString()} bytes, sha256 ${res.sha256})`);
      return res;
    } catch (err) {
      if (err instanceof FpdError) this.error(err.message, { exit: 2 });
      throw err;
    } finally {
      await session.close();
    }
  }
}

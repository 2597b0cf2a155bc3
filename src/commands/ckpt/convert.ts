import { Args, Flags } from "@oclif/core";
import { convertCheckpoint, type ConvertedCheckpoint } from "../../api/checkpoints.js";
import { FpdCommand } from "../../cli/base.js";
import { setFlag, weightsFlag } from "../../cli/flags.js";

export default class CkptConvert extends FpdCommand {
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
  static override args = { file: Args.string({ description: "checkpoint or export", required: true }) };
  static override flags = {
    to: Flags.option({ description: "target format", options: ["safetensors", "state_dict", "score_sde"] as const, required: true })(),
    out: Flags.string({ description: "file to write", required: true }),
    weights: weightsFlag("which weights to export"),
    preset: Flags.string({ description: "preset or experiment file, when the layout matches no preset" }),
    set: setFlag,
  };

  async run(): Promise<ConvertedCheckpoint> {
    const { args, flags } = await this.parse(CkptConvert);
    const experiment = flags.preset ? await this.loadExperiment(flags.preset, flags.set) : undefined;
    const res = await this.withSession("cpu", (session) =>
      convertCheckpoint(session, {
        path: args.file,
        out: flags.out,
        to: flags.to,
        weights: flags.weights,
        ...(experiment ? { experiment } : {}),
      }),
    );
    if (!this.jsonEnabled()) this.log(`wrote ${res.path} (${res.format}, ${res.bytes.toLocaleString()} bytes, sha256 ${res.sha256})`);
    return res;
  }
}

import { Args } from "@oclif/core";
import { inspectCheckpoint, type CheckpointInspection } from "../../api/checkpoints.js";
import { FpdCommand } from "../../cli/base.js";

export default class CkptInspect extends FpdCommand {
  static override summary = "Describe a checkpoint: format, step, parameters, EMA, optimiser, matching presets.";
  static override description =
    "Reads the file safely (no code in it runs: only tensors, plain values and NumPy numeric values are accepted) " +
    "and names the preset(s) whose layout it has, e.g. ve/cifar10_ncsnpp_continuous, or the same with model.nf=8 for a " +
    "narrower copy. Works for PyTorch Score SDE checkpoints, our own, plain state-dict / safetensors exports and the flax " +
    "states of score_flow / score_sde (JAX) / mle_score_ode; a work directory means its newest checkpoints/checkpoint_<N>.";
  static override examples = [
    "<%= config.bin %> ckpt inspect checkpoint_26.pth",
    "<%= config.bin %> ckpt inspect runs/fp-ve/checkpoints-meta/checkpoint.pth --json",
    "<%= config.bin %> ckpt inspect cifar10_vp_likelihood_iw   # a score_flow work directory (flax)",
  ];
  static override args = { file: Args.string({ description: "checkpoint file", required: true }) };

  async run(): Promise<CheckpointInspection> {
    const { args } = await this.parse(CkptInspect);
    const info = await this.withSession("cpu", (session) => inspectCheckpoint(session, args.file));
    if (!this.jsonEnabled()) {
      const m = (n: number) => (n / 1e6).toFixed(2) + "M";
      this.log(`file        ${info.path} (${(info.bytes ?? 0).toLocaleString()} bytes, ${info.container})`);
      this.log(`sha256      ${info.sha256}`);
      const source = info.format === "flax" ? "flax (score_flow / score_sde JAX training state)" : info.format;
      this.log(`format      ${source}${info.step !== null ? `, step ${info.step}` : ""}`);
      this.log(`tensors     ${info.tensors}, ${m(info.parameterCount)} parameters (${Object.entries(info.dtypes).map(([k, v]) => `${v} ${k}`).join(", ")})`);
      if (info.ema) {
        const updates = info.ema.numUpdates === null ? "constant rate (no update count)" : `${info.ema.numUpdates} updates`;
        this.log(`ema         rate ${info.ema.decay}, ${updates}, ${info.ema.shadowParams} tensors`);
      }
      if (info.optimizer) {
        const o = info.optimizer;
        const hyper = o.betas ? `, betas ${JSON.stringify(o.betas)}, eps ${o.eps}` : "";
        const step = info.adamStep !== null ? `, step ${info.adamStep}` : "";
        this.log(`optimizer   ${o.kind}: lr ${o.lr} (${o.lrType})${hyper}${step}, ${o.stateEntries}/${o.parameters} with state`);
      }
      const presets = info.matchingPresets.map((p) => p.preset + Object.entries(p.overrides).map(([k, v]) => ` --set model.${k}=${String(v)}`).join(""));
      this.log(`presets     ${presets.length ? presets.join("\n            ") : "none of the known presets"}`);
    }
    return info;
  }
}

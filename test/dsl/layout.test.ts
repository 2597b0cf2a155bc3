/**
 * `fpd config show --json` against the original configurations. The expected values below are
 * written from the original files, section by section, the way those files build them: the
 * repository's `default_*_configs.py`, then the per-config file's assignments.
 *   Score SDE:     yang-song/score_sde_pytorch configs/default_cifar10_configs.py + {ve,vp,subvp}/cifar10_*_continuous.py
 *   FP-Diffusion:  sony/fp-diffusion configs/default_cifar10_configs.py (+ the same per-config files)
 *   High-order:    LuChengTHU/mle_score_ode configs/default_{cifar10,imagenet32}_configs.py + ve/*_continuous.py
 *   ScoreFlow:     yang-song/score_flow configs/default_{cifar10,imagenet32}_configs.py + {vp,subvp}/*_continuous.py,
 *                  with --config.training.likelihood_weighting and importance_weighting on (its "likelihood_iw" runs)
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Config } from "@oclif/core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { originalLayout } from "../../src/dsl/index.js";
import { getPreset, presets } from "../../configs/index.js";
import ConfigShow from "../../src/commands/config/show.js";
import { ROOT } from "./helpers.js";

type Section = Record<string, unknown>;
type Cfg = Record<string, Section | number>;

/** Deep merge of plain sections (what the original files do by assignment). */
function merged(...parts: Array<Record<string, Section | number>>): Cfg {
  const out: Cfg = {};
  for (const p of parts) {
    for (const [k, v] of Object.entries(p)) {
      out[k] = typeof v === "number" ? v : { ...((out[k] as Section) ?? {}), ...v };
    }
  }
  return out;
}

// --- yang-song/score_sde_pytorch configs/default_cifar10_configs.py
const scoreSdeDefaults = {
  training: { batch_size: 128, n_iters: 1300001, snapshot_freq: 50000, log_freq: 50, eval_freq: 100, snapshot_freq_for_preemption: 10000, snapshot_sampling: true, likelihood_weighting: false, continuous: true, reduce_mean: false },
  sampling: { n_steps_each: 1, noise_removal: true, probability_flow: false, snr: 0.16 },
  eval: { begin_ckpt: 9, end_ckpt: 26, batch_size: 1024, enable_sampling: false, num_samples: 50000, enable_loss: true, enable_bpd: false, bpd_dataset: "test" },
  data: { dataset: "CIFAR10", image_size: 32, random_flip: true, centered: false, uniform_dequantization: false, num_channels: 3 },
  model: { sigma_min: 0.01, sigma_max: 50, num_scales: 1000, beta_min: 0.1, beta_max: 20, dropout: 0.1, embedding_type: "fourier" },
  optim: { weight_decay: 0, optimizer: "Adam", lr: 2e-4, beta1: 0.9, eps: 1e-8, warmup: 5000, grad_clip: 1 },
  seed: 42,
};

// --- configs/ve/cifar10_ncsnpp_continuous.py (identical in sony/fp-diffusion)
const veNcsnpp = (deep: boolean) => ({
  training: { sde: "vesde", continuous: true, ...(deep ? { n_iters: 950001 } : {}) },
  sampling: { method: "pc", predictor: "reverse_diffusion", corrector: "langevin" },
  model: {
    name: "ncsnpp", scale_by_sigma: true, ema_rate: 0.999, normalization: "GroupNorm", nonlinearity: "swish", nf: 128,
    ch_mult: [1, 2, 2, 2], num_res_blocks: deep ? 8 : 4, attn_resolutions: [16], resamp_with_conv: true, conditional: true,
    fir: true, fir_kernel: [1, 3, 3, 1], skip_rescale: true, resblock_type: "biggan", progressive: "none",
    progressive_input: "residual", progressive_combine: "sum", attention_type: "ddpm", init_scale: 0, fourier_scale: 16, conv_size: 3,
  },
});

// --- configs/{vp,subvp}/cifar10_ddpmpp{,_deep}_continuous.py (identical in sony/fp-diffusion)
const vpDdpmpp = (sdeName: string, deep: boolean) => ({
  training: { sde: sdeName, continuous: true, reduce_mean: true, ...(deep ? { n_iters: 950001 } : {}) },
  sampling: { method: "pc", predictor: "euler_maruyama", corrector: "none" },
  data: { centered: true },
  model: {
    name: "ncsnpp", scale_by_sigma: false, ema_rate: 0.9999, normalization: "GroupNorm", nonlinearity: "swish", nf: 128,
    ch_mult: [1, 2, 2, 2], num_res_blocks: deep ? 8 : 4, attn_resolutions: [16], resamp_with_conv: true, conditional: true,
    fir: false, fir_kernel: [1, 3, 3, 1], skip_rescale: true, resblock_type: "biggan", progressive: "none",
    progressive_input: "none", progressive_combine: "sum", attention_type: "ddpm", init_scale: 0, embedding_type: "positional",
    fourier_scale: 16, conv_size: 3,
  },
});

// --- sony/fp-diffusion configs/default_cifar10_configs.py: Score SDE's defaults but these
const fpDefaults = merged(scoreSdeDefaults, {
  training: { batch_size: 48, likelihood_weighting: true, scalar_fp: "both", fp_wgt_type: "ll", alpha: 0.15, beta: 0.01, m: 2 },
});

// --- LuChengTHU/mle_score_ode configs/default_cifar10_configs.py (batch 48: third order; 128: first and second)
const mleCifarDefaults = (order: number) => ({
  training: { batch_size: order === 3 ? 48 : 128, n_iters: 4000001, snapshot_freq: 50000, log_freq: 100, eval_freq: 100, snapshot_freq_for_preemption: 10000, snapshot_sampling: true, likelihood_weighting: false, importance_weighting: false, continuous: true, reduce_mean: false, smallest_time: 1e-5, score_matching_order: order },
  sampling: { n_steps_each: 1, noise_removal: true, probability_flow: false, snr: 0.16, smallest_time: 1e-3 },
  eval: { begin_ckpt: 26, end_ckpt: 26, batch_size: 2000, enable_sampling: true, num_samples: 50000, enable_loss: false, enable_bpd: true, bpd_dataset: "test", num_repeats: 5 },
  data: { dataset: "CIFAR10", image_size: 32, random_flip: true, centered: false, uniform_dequantization: false, num_channels: 3 },
  model: { sigma_min: 0.01, sigma_max: 50, num_scales: 1000, beta_min: 0.1, beta_max: 20, dropout: 0.1, embedding_type: "fourier" },
  optim: { weight_decay: 0, optimizer: "Adam", lr: 2e-4, beta1: 0.9, eps: 1e-8, warmup: 5000, grad_clip: 1 },
  seed: 42,
});
// --- LuChengTHU/mle_score_ode configs/default_imagenet32_configs.py
const mleImagenetDefaults = (order: number) => ({
  training: { batch_size: order === 3 ? 48 : 128, n_iters: 1400001, snapshot_freq: 50000, log_freq: 100, eval_freq: 100, snapshot_freq_for_preemption: 10000, snapshot_sampling: true, likelihood_weighting: false, importance_weighting: false, continuous: true, reduce_mean: false, smallest_time: 1e-5, score_matching_order: order },
  sampling: { n_steps_each: 1, noise_removal: true, probability_flow: false, snr: 0.16 },
  eval: { begin_ckpt: 26, end_ckpt: 26, batch_size: 1024, enable_sampling: false, num_samples: 50000, enable_loss: false, enable_bpd: true, bpd_dataset: "test", num_repeats: 1 },
  data: { dataset: "ImageNet", image_size: 32, random_flip: false, centered: false, uniform_dequantization: false, num_channels: 3 },
  model: { sigma_min: 0.01, sigma_max: 50, num_scales: 1000, beta_min: 0.1, beta_max: 20, dropout: 0, embedding_type: "fourier" },
  optim: { weight_decay: 0, optimizer: "Adam", lr: 2e-4, beta1: 0.9, eps: 1e-8, warmup: 5000, grad_clip: 1 },
  seed: 42,
});
// --- mle_score_ode configs/ve/{cifar10,imagenet32}_ncsnpp{,_deep}_continuous.py
const mleVe = (deep: boolean, ode: boolean) => ({
  training: { sde: "vesde", continuous: true, reduce_mean: true, likelihood_weighting: false, importance_weighting: false },
  sampling: ode ? { method: "ode", smallest_time: 1e-5 } : { smallest_time: 1e-5, method: "pc", predictor: "reverse_diffusion", corrector: "langevin", probability_flow: false },
  data: { centered: false },
  model: {
    name: "ncsnpp", scale_by_sigma: true, ema_rate: 0.999, normalization: "GroupNorm", nonlinearity: "swish", nf: 128,
    ch_mult: [1, 2, 2, 2], num_res_blocks: deep ? 8 : 4, attn_resolutions: [16], resamp_with_conv: true, conditional: true,
    fir: true, fir_kernel: [1, 3, 3, 1], skip_rescale: true, resblock_type: "biggan", progressive: "none",
    progressive_input: "residual", progressive_combine: "sum", attention_type: "ddpm", init_scale: 0, embedding_type: "fourier",
    fourier_scale: 16, conv_size: 3,
  },
});
/** PC-only sampler fields of the defaults that an ODE sampler has no use for (not shown for `ode`). */
const PC_ONLY = ["n_steps_each", "probability_flow", "snr"];
/** Fields of the JAX originals fpdiff has no counterpart for. */
const JAX_ONLY = { model: ["data_init", "trainable_embedding"] };

// --- yang-song/score_flow configs/default_{cifar10,imagenet32}_configs.py, likelihood weighting +
// importance sampling switched on as for its released "likelihood_iw" checkpoints
const scoreFlowDefaults = (dataset: "cifar10" | "imagenet32") => ({
  training: { batch_size: 128, n_iters: 1300001, snapshot_freq: 50000, log_freq: 100, eval_freq: 100, snapshot_freq_for_preemption: 10000, snapshot_sampling: true, likelihood_weighting: true, importance_weighting: true, continuous: true, reduce_mean: false, smallest_time: 1e-5 },
  sampling: { n_steps_each: 1, noise_removal: true, probability_flow: false, snr: 0.16, ...(dataset === "cifar10" ? { smallest_time: 1e-3 } : {}) },
  eval: { begin_ckpt: 26, end_ckpt: 26, batch_size: 1024, enable_sampling: false, num_samples: 50000, enable_loss: false, enable_bpd: true, bpd_dataset: "test", num_repeats: dataset === "cifar10" ? 5 : 1 },
  data: dataset === "cifar10"
    ? { dataset: "CIFAR10", image_size: 32, random_flip: true, centered: false, uniform_dequantization: false, num_channels: 3 }
    : { dataset: "ImageNet", image_size: 32, random_flip: false, centered: false, uniform_dequantization: false, num_channels: 3 },
  model: { sigma_min: 0.01, sigma_max: 50, num_scales: 1000, beta_min: 0.1, beta_max: 20, dropout: dataset === "cifar10" ? 0.1 : 0, embedding_type: "fourier" },  // (+ data_init, trainable_embedding: JAX_ONLY)
  optim: { weight_decay: 0, optimizer: "Adam", lr: 2e-4, beta1: 0.9, eps: 1e-8, warmup: 5000, grad_clip: 1 },
  seed: 42,
});
// --- score_flow configs/{vp,subvp}/{cifar10,imagenet32}_ddpmpp{,_deep}_continuous.py
const scoreFlowDdpmpp = (kind: "vp" | "subvp", dataset: "cifar10" | "imagenet32", deep: boolean) => {
  const smallest = kind === "subvp" ? 1e-2 : dataset === "imagenet32" ? 5e-5 : 1e-5; // imagenet32 VP: 5e-5 with lw + iw
  const base = vpDdpmpp(kind === "vp" ? "vpsde" : "subvpsde", deep);
  return {
    training: { ...base.training, smallest_time: smallest },
    sampling: { method: "ode", smallest_time: kind === "subvp" ? 1e-2 : 1e-3 },
    ...(deep ? { eval: { begin_ckpt: 19, end_ckpt: 19 } } : {}),
    data: { centered: true },
    model: base.model,
  };
};

const expected: Record<string, Cfg> = {
  "ve/cifar10_ncsnpp_continuous": merged(scoreSdeDefaults, veNcsnpp(false)),
  "ve/cifar10_ncsnpp_deep_continuous": merged(scoreSdeDefaults, veNcsnpp(true)),
  "vp/cifar10_ddpmpp_continuous": merged(scoreSdeDefaults, vpDdpmpp("vpsde", false)),
  "vp/cifar10_ddpmpp_deep_continuous": merged(scoreSdeDefaults, vpDdpmpp("vpsde", true)),
  "subvp/cifar10_ddpmpp_continuous": merged(scoreSdeDefaults, vpDdpmpp("subvpsde", false)),
  "subvp/cifar10_ddpmpp_deep_continuous": merged(scoreSdeDefaults, vpDdpmpp("subvpsde", true)),
  "fp/ve_cifar10": merged(fpDefaults, veNcsnpp(false)),
  "fp/ve_cifar10_deep": merged(fpDefaults, veNcsnpp(true)),
  "fp/vp_cifar10": merged(fpDefaults, vpDdpmpp("vpsde", false)),
  "fp/vp_cifar10_deep": merged(fpDefaults, vpDdpmpp("vpsde", true)),
  "fp/subvp_cifar10": merged(fpDefaults, vpDdpmpp("subvpsde", false)),
  "fp/subvp_cifar10_deep": merged(fpDefaults, vpDdpmpp("subvpsde", true)),
};
// The `_reference` variants have the same original configuration (they differ in fpdiff's own
// fields: the loss's dt and the SDE's std formula).
for (const name of Object.keys(expected).filter((n) => n.startsWith("fp/"))) expected[`${name}_reference`] = expected[name]!;
for (const order of [1, 2, 3]) {
  expected[`highorder/ve_cifar10_order${order}`] = merged(mleCifarDefaults(order), mleVe(false, true));
  expected[`highorder/ve_cifar10_deep_order${order}`] = merged(mleCifarDefaults(order), mleVe(true, false));
  expected[`highorder/ve_imagenet32_order${order}`] = merged(mleImagenetDefaults(order), mleVe(false, true));
  expected[`highorder/ve_imagenet32_deep_order${order}`] = merged(mleImagenetDefaults(order), mleVe(true, true));
}

for (const dataset of ["cifar10", "imagenet32"] as const) {
  for (const kind of ["vp", "subvp"] as const) {
    for (const deep of [false, true]) {
      expected[`scoreflow/${kind}/${dataset}_ddpmpp${deep ? "_deep" : ""}_continuous`] = merged(scoreFlowDefaults(dataset), scoreFlowDdpmpp(kind, dataset, deep));
    }
  }
}

// `show --json` of every preset, through the real oclif command.
const shown = new Map<string, Record<string, unknown>>();
let printed = "";
beforeAll(async () => {
  const config = await Config.load(ROOT);
  // oclif prints through console.log.
  const spy = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
    printed += args.map(String).join(" ") + "\n";
  });
  try {
    for (const p of presets) {
      printed = "";
      const result = (await ConfigShow.run([p.name, "--json"], config)) as Record<string, unknown>;
      expect(JSON.parse(printed)).toEqual(result);
      shown.set(p.name, result);
    }
  } finally {
    spy.mockRestore();
  }
});
afterAll(() => vi.restoreAllMocks());

describe("fpd config show --json equals the original configurations", () => {
  it("covers every original-based preset", () => {
    const originals = presets.map((p) => p.name).filter((n) => !n.startsWith("toy/"));
    expect(Object.keys(expected).sort()).toEqual(originals.sort());
  });

  for (const [name, want] of Object.entries(expected)) {
    it(name, () => {
      const got = shown.get(name)!;
      expect(got).toEqual(originalLayout(getPreset(name)!.experiment));
      const ode = (want.sampling as Section).method === "ode";
      for (const [section, fields] of Object.entries(want)) {
        if (typeof fields === "number") {
          expect(got[section], `${name}: ${section}`).toBe(fields);
          continue;
        }
        for (const [k, v] of Object.entries(fields)) {
          if (section === "sampling" && ode && PC_ONLY.includes(k)) continue;
          expect((got[section] as Section)[k], `${name}: ${section}.${k}`).toEqual(v);
        }
      }
      // The model section holds exactly the original's fields, nothing missing, nothing added.
      const modelKeys = Object.keys(want.model as Section).filter((k) => !JAX_ONLY.model.includes(k));
      expect(Object.keys(got.model as Section).sort()).toEqual(modelKeys.sort());
    });
  }

  it("the loss section is the experiment's loss in snake_case", () => {
    const fp = shown.get("fp/ve_cifar10_reference")!;
    expect(fp.loss).toEqual({
      terms: [
        { kind: "dsm", weighting: "likelihood", importance_sampling: false, reduce: "sum", eps: 1e-5 },
        { kind: "scoreFpe", mode: "both", alpha: 0.15, beta: 0.01, m: 2, weighting: "ll", points: "pert", dt: { finite_difference: { hs: 1e-3, hd: 5e-4 } }, div: "hutchinson", probe: "gaussian" },
      ],
    });
    expect((shown.get("highorder/ve_cifar10_order3")!.loss as { terms: unknown[] }).terms[1]).toEqual({
      kind: "highOrder", order: 3, parts: ["frobenius", "trace"], lambdas: { second: 1, third: 1 }, estimator: "hutchinson", probe: "rademacher",
    });
  });

  it("shows the VP / subVP std formula beside the SDE, and the reference presets' numerics", () => {
    const training = (name: string) => shown.get(name)!.training as Section;
    expect(training("vp/cifar10_ddpmpp_continuous").std_formula).toBe("original");
    expect(training("subvp/cifar10_ddpmpp_deep_continuous").std_formula).toBe("original");
    expect(training("fp/vp_cifar10").std_formula).toBe("stable");
    expect(training("fp/subvp_cifar10_deep_reference").std_formula).toBe("original");
    expect("std_formula" in training("ve/cifar10_ncsnpp_continuous")).toBe(false);
    const dt = (name: string) => ((shown.get(name)!.loss as { terms: Array<Record<string, unknown>> }).terms[1]!).dt;
    for (const kind of ["ve", "vp", "subvp"]) {
      for (const deep of ["", "_deep"]) {
        expect(dt(`fp/${kind}_cifar10${deep}`)).toBe("autodiff");
        expect(dt(`fp/${kind}_cifar10${deep}_reference`)).toEqual({ finite_difference: { hs: 1e-3, hd: 5e-4 } });
      }
    }
  });

  it("toy presets follow the high-order paper's toy.py", () => {
    const t = shown.get("toy/checkerboard_ve_order3")!;
    expect(t.training).toMatchObject({ sde: "vesde", batch_size: 5000, n_iters: 100000, smallest_time: 1e-5, score_matching_order: 3 });
    expect(t.optim).toMatchObject({ lr: 1e-3, warmup: 0, grad_clip: 1 });
    expect(t.model).toEqual({ name: "mlp", embed_dim: 64, time_hidden: [128, 128], x_hidden: [128, 128], width: 128, hidden: [512, 512], nonlinearity: "swish", ema_rate: 0.999, param: "eps" });
    expect(t.data).toEqual({ dataset: "checkerboard", dim: 2 });
    expect((t.loss as { terms: unknown[] }).terms[1]).toEqual({ kind: "highOrder", order: 3, parts: ["frobenius"], lambdas: { second: 0.5, third: 0.1 }, estimator: "exact", probe: "rademacher" });
    expect((t.eval as Section).bpd).toMatchObject({ ode_method: "RK45", rtol: 1e-5, atol: 1e-5, divergence: "exact", dequantize: false });
    expect(shown.get("toy/mog1d_vp_dsm")!.data).toEqual({ dataset: "mog1d", dim: 1 });
    expect(shown.get("toy/mog1d_vp_dsm")!.training).toMatchObject({ sde: "vpsde" });
  });
});

describe("the shared checkpoint manifests (configs the original checkpoints were made with)", () => {
  const dir = join(ROOT, "test", "fixtures", "reference"); // copies of the steering repo's shared/reference/checkpoints
  const names = ["ve/cifar10_ncsnpp_continuous", "ve/cifar10_ncsnpp_deep_continuous", "vp/cifar10_ddpmpp_continuous", "subvp/cifar10_ddpmpp_deep_continuous"];
  it("exist", () => expect(existsSync(dir)).toBe(true));
  for (const name of names) {
    it(name, () => {
      const m = JSON.parse(readFileSync(join(dir, `manifest_${name.replace("/", "_")}.json`), "utf8"));
      const got = shown.get(name)!;
      expect(m.config_name).toBe(name);
      expect(got.model).toEqual(m.config_model);
      expect(got.data).toEqual(m.config_data);
      expect(got.optim).toEqual(m.config_optim);
      expect(got.training).toMatchObject({
        sde: m.config_training_sde,
        continuous: m.config_training_continuous,
        reduce_mean: m.config_training_reduce_mean,
        likelihood_weighting: m.config_training_likelihood_weighting,
      });
    });
  }
});

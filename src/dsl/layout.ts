/**
 * The original Score SDE config layout of an experiment (`fpd config show --json`): sections
 * training, sampling, eval, data, model, optim with the original snake_case names and values
 * (`training.sde = "vesde"`, `model.name = "ncsnpp"`, `data.dataset = "CIFAR10"` …), plus `seed`
 * and a `loss` section, so a user can diff it against an original config. Fields the originals
 * do not have are added beside theirs under the same naming rule.
 */
import { ORIGINAL_SDE_NAME } from "./sde.js";
import type { Experiment } from "./experiment.js";
import type { DsmTerm, HighOrderTerm, ScoreFpeTerm } from "./loss.js";

/**
 * camelCase → snake_case by the wire rule (docs/contracts.md §1): `_` before an upper-case letter
 * that follows a lower-case letter or digit, then lower-case; single-letter keys stay (`N`).
 */
export function toSnake(key: string): string {
  if (key.length === 1) return key;
  return key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

/** The inverse of `toSnake` on the experiment's keys. */
export function toCamel(key: string): string {
  if (key.length === 1) return key;
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Deep copy with every object key converted by `toSnake`. */
export function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [toSnake(k), snakeKeys(v)]));
  }
  return value;
}

/** Score FPE `mode` → FP-Diffusion's `training.scalar_fp`. */
const SCALAR_FP = { scalar: "True", vector: "False", both: "both" } as const;
const DATASET_NAME = { cifar10: "CIFAR10", imagenet32: "ImageNet" } as const;
const SOLVER_NAME = { dopri5: "RK45", rk4: "rk4", euler: "euler" } as const;

export type OriginalLayout = Record<string, unknown>;

/** The experiment in the original layout (a plain JSON object). */
export function originalLayout(e: Experiment): OriginalLayout {
  const dsm = e.loss.terms.find((t): t is DsmTerm => t.kind === "dsm");
  const high = e.loss.terms.find((t): t is HighOrderTerm => t.kind === "highOrder");
  const fpe = e.loss.terms.find((t): t is ScoreFpeTerm => t.kind === "scoreFpe");
  const tr = e.training;

  const training: Record<string, unknown> = {
    sde: ORIGINAL_SDE_NAME[e.sde.kind],
    // not an original field: which std(t) formula (the originals' own is "original"; score_flow's
    // "scoreflow"), beside the SDE it belongs to
    ...(e.sde.kind === "ve" ? {} : { std_formula: e.sde.stdFormula }),
    continuous: tr.continuous,
    batch_size: tr.batchSize,
    n_iters: tr.nIters,
    snapshot_freq: tr.snapshotFreq,
    log_freq: tr.logFreq,
    eval_freq: tr.evalFreq,
    snapshot_freq_for_preemption: tr.snapshotFreqForPreemption,
    snapshot_sampling: tr.snapshotSampling,
  };
  if (dsm) {
    Object.assign(training, {
      likelihood_weighting: dsm.weighting === "likelihood",
      importance_weighting: dsm.importanceSampling,
      reduce_mean: dsm.reduce === "mean",
      smallest_time: dsm.eps,
    });
  }
  training.score_matching_order = high ? high.order : 1;
  if (fpe) {
    Object.assign(training, {
      scalar_fp: SCALAR_FP[fpe.mode],
      fp_wgt_type: fpe.weighting,
      alpha: fpe.alpha,
      beta: fpe.beta,
      m: fpe.m,
    });
  }
  training.deterministic = tr.deterministic;

  const s = e.sampling;
  const sampling: Record<string, unknown> =
    s.method === "pc"
      ? {
          method: "pc",
          predictor: s.predictor,
          corrector: s.corrector,
          n_steps_each: s.nStepsEach,
          noise_removal: s.noiseRemoval,
          probability_flow: s.probabilityFlow,
          snr: s.snr,
          N: s.N,
          smallest_time: s.eps,
        }
      : {
          method: "ode",
          noise_removal: s.noiseRemoval,
          rtol: s.rtol,
          atol: s.atol,
          ode_method: SOLVER_NAME[s.solver],
          smallest_time: s.eps,
        };

  const ev = e.eval;
  const evaluation = {
    begin_ckpt: ev.beginCkpt,
    end_ckpt: ev.endCkpt,
    batch_size: ev.batchSize,
    enable_sampling: ev.enableSampling,
    num_samples: ev.numSamples,
    enable_loss: ev.enableLoss,
    enable_bpd: ev.enableBpd,
    bpd_dataset: ev.bpd.dataset,
    num_repeats: ev.bpd.repeats,
    bpd: {
      ode_method: SOLVER_NAME[ev.bpd.solver],
      rtol: ev.bpd.rtol,
      atol: ev.bpd.atol,
      eps: ev.bpd.eps,
      hutchinson_type: ev.bpd.probe === "rademacher" ? "Rademacher" : "Gaussian",
      divergence: ev.bpd.divergence,
      dequantize: ev.bpd.dequantize,
    },
  };

  const d = e.data;
  const data: Record<string, unknown> =
    d.kind === "toy"
      ? { dataset: d.dataset, dim: d.dim, ...(d.scale !== undefined ? { scale: d.scale } : {}) }
      : {
          dataset: DATASET_NAME[d.kind],
          image_size: d.imageSize,
          random_flip: d.randomFlip,
          centered: d.centered,
          uniform_dequantization: d.uniformDequantization,
          num_channels: d.numChannels,
          ...(d.path !== undefined ? { path: d.path } : {}),
        };

  const { kind, ...modelFields } = e.model;
  const model = {
    name: kind === "mlp" ? "mlp" : "ncsnpp",
    ...(snakeKeys(modelFields) as Record<string, unknown>),
  };

  const o = e.optim;
  const optim = {
    weight_decay: o.weightDecay,
    optimizer: "Adam",
    lr: o.lr,
    beta1: o.beta1,
    eps: o.eps,
    warmup: o.warmup,
    grad_clip: o.gradClip,
  };

  return {
    name: e.name,
    ...(e.description !== undefined ? { description: e.description } : {}),
    training,
    sampling,
    eval: evaluation,
    data,
    model,
    optim,
    seed: tr.seed,
    loss: snakeKeys(e.loss),
  };
}

/**
 * Ops of the toy main job (py/fpdiff/ops/toy.py): toy data, a model's ODE log-density on a grid
 * (and its mass on the data's support), its NLL against the entropy floor with the per-sample
 * values for paired comparisons, samples, the mechanism curves along t, and the report's PNGs.
 */
import { z } from "zod";
import { defineOp, tensorSchema } from "./define.js";
import { curve, curvesAlongT, ProgressSchema } from "./numerics.js";

const toyDataset = z.enum(["checkerboard", "mog1d", "mog2d", "rings", "moons", "swissroll", "gaussian"]);
/** Which weights score the model: the EMA copy (default, as the originals evaluate) or the raw ones. */
const weightsArg = z.enum(["ema", "model"]).default("ema");
const solver = z.enum(["dopri5", "rk4", "euler"]);
/** A tensor, or plain numbers (1-D or 2-D). */
const arrayLike = z.union([tensorSchema, z.array(z.number()), z.array(z.array(z.number()))]);
const bound = z.union([z.number(), z.array(z.number())]);

/** ODE settings; absent ones come from the model's experiment (eval.bpd). `steps` is for rk4/euler. */
const odeArgs = {
  rtol: z.number().positive().optional(),
  atol: z.number().positive().optional(),
  eps: z.number().min(0).max(1).optional(),
  method: solver.optional(),
  steps: z.number().int().positive().default(100),
};

export const ToyNllResultSchema = z.object({
  dataset: toyDataset,
  /** Mean negative log-likelihood in nats of fresh test samples, by the probability-flow ODE. */
  nll: z.number(),
  stderr: z.number(),
  /** The data law's entropy (the floor of any NLL): log 32 = 3.466 for the checkerboard. */
  floor: z.number().nullable(),
  floorMethod: z.enum(["exact", "monte-carlo"]).nullable(),
  gap: z.number().nullable(),
  /** −log p of each test point (float64), in the order of the points: the same points for every
   *  model given the same (n, seed), so differences between models can be paired. */
  perSample: tensorSchema,
  n: z.number().int(),
  nfe: z.number().int(),
  /** The ODE solver that answered (see likelihood.nll). */
  solver: z.string(),
  seconds: z.number(),
  /** The model's training step. */
  step: z.number().int(),
});
export type ToyNllResult = z.infer<typeof ToyNllResultSchema>;

/** Curves along t (each list aligned with `t`); those that need the data score in closed form
 *  (mixtures, checkerboard) are null for other data, `fisherOde` also when `ode` was false. */
export const ToyDiagnosticsResultSchema = curvesAlongT({
  /** E‖∂t s − ∇x φ̃‖ at x_t ~ q_t (absolute; exact divergence, autodiff ∂t). */
  residual: curve(),
  /** E‖∂t s‖ and E‖∇x φ̃‖: the two sides of the score FPE. */
  dtScore: curve(),
  gradPhi: curve(),
  /** E‖std(t)·s_θ‖ and the truth's E‖std(t)·∇log q_t‖. */
  sigmaScore: curve().nullable(),
  sigmaScoreTrue: curve().nullable(),
  /** E[g²‖s_θ − ∇log q_t‖²]: the model score's weighted Fisher divergence to the truth. */
  scoreError: curve().nullable(),
  /** E[g²‖∇log p_t^ODE − ∇log q_t‖²]: the ScoreODE's own score's (high-order DSM paper, Fig. 3). */
  fisherOde: curve().nullable(),
});
export type ToyDiagnostics = z.infer<typeof ToyDiagnosticsResultSchema>;

export const DensityPanelSchema = z.strictObject({
  kind: z.literal("density"),
  title: z.string().optional(),
  /** [x, y] grid axes; `logp` [ny, nx] with logp[i][j] at (x[j], y[i]) (as toy.density returns). */
  axes: z.array(arrayLike).length(2),
  logp: arrayLike,
  logScale: z.boolean().default(false),
  vmax: z.number().positive().optional(),
});
export const SamplesPanelSchema = z.strictObject({
  kind: z.literal("samples"),
  title: z.string().optional(),
  /** Points [n, 2]. */
  x: arrayLike,
  xlim: z.tuple([z.number(), z.number()]).optional(),
  ylim: z.tuple([z.number(), z.number()]).optional(),
  /** 2-D histogram instead of a scatter (default: above 20 000 points). */
  histogram: z.boolean().optional(),
});
export const CurvesPanelSchema = z.strictObject({
  kind: z.literal("curves"),
  title: z.string().optional(),
  /** 1-D grid; each curve is exp(logp) over it. */
  x: arrayLike,
  curves: z.array(z.strictObject({ label: z.string(), logp: arrayLike })),
  /** Optional samples, drawn as a normalised histogram. */
  samples: arrayLike.optional(),
});
/** One line of a line plot: its points, optional error bars and legend label. */
const lineSeries = {
  label: z.string().optional(),
  x: z.array(z.number()),
  y: z.array(z.number()),
  yerr: z.array(z.number()).optional(),
};
/** A dashed horizontal reference line, e.g. the entropy floor. */
export const ReferenceLineSchema = z.strictObject({ y: z.number(), label: z.string().optional() });
/** The axes of a line plot. */
const lineAxes = {
  xlabel: z.string().optional(),
  ylabel: z.string().optional(),
  /** Log axes leave out non-positive values. */
  logx: z.boolean().default(false),
  logy: z.boolean().default(false),
  hline: ReferenceLineSchema.optional(),
};

export const LinesPanelSchema = z.strictObject({
  kind: z.literal("lines"),
  title: z.string().optional(),
  series: z
    .array(
      z.strictObject({
        ...lineSeries,
        /** Matplotlib line style and colour (e.g. "C0"): one colour per method across panels. */
        style: z.enum(["-", "--", ":", "-."]).optional(),
        color: z.string().optional(),
      }),
    )
    .min(1),
  ...lineAxes,
});
export const BarsPanelSchema = z.strictObject({
  kind: z.literal("bars"),
  title: z.string().optional(),
  labels: z.array(z.string()).min(1),
  values: z.array(z.number()),
  /** Error bars (e.g. paired standard errors), one per bar. */
  errors: z.array(z.number()).optional(),
  ylabel: z.string().optional(),
});
export const PanelSchema = z.discriminatedUnion("kind", [DensityPanelSchema, SamplesPanelSchema, CurvesPanelSchema, LinesPanelSchema, BarsPanelSchema]);
export type Panel = z.input<typeof PanelSchema>;

export const SavedPngSchema = z.object({ path: z.string(), bytes: z.number().int() });

export const toyOps = {
  "toy.data": defineOp({
    args: z.strictObject({
      dataset: toyDataset,
      n: z.number().int().positive(),
      dim: z.number().int().positive().optional(),
      scale: z.number().positive().optional(),
      seed: z.number().int().nonnegative().default(0),
    }),
    result: z.object({ x: tensorSchema, entropy: z.number().nullable() }),
    doc: "n seeded samples [n, D] of a toy data set, with its entropy (nats) where known",
  }),
  "toy.density": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      /** Points per axis. */
      n: z.number().int().min(2).max(2000).default(100),
      /** Grid bounds, one number for every axis or one per axis (default: the data's range ± 5 %;
       *  checkerboard: cells that tile [−4, 4]² exactly, plus ≈ 5 % margin). `n` cells per axis. */
      gridLo: bound.optional(),
      gridHi: bound.optional(),
      /** Also return the true log-density where known. */
      truth: z.boolean().default(true),
      /** Points per ODE solve (default: the whole grid in one solve). */
      batchSize: z.number().int().positive().optional(),
      ...odeArgs,
    }),
    result: z.object({
      /** [x] (1-D) or [x, y] (2-D), float32. */
      axes: z.array(tensorSchema),
      /** log p_eps by the ODE: [n] or [n(y), n(x)]. */
      logp: tensorSchema,
      /** The data law's log-density on the same grid (−inf off the checkerboard), or null. */
      trueLogp: tensorSchema.nullable(),
      /** Σ over grid cells of density × cell area × the cell's share on the data's support (the
       *  checkerboard's 8 squares; uniform noise on [−4, 4]² scores 0.5, the data 1), or null. */
      massOnSupport: z.number().nullable(),
      /** Σ density × cell area over the grid (≈ 1 when the grid holds the model's mass). */
      massInGrid: z.number(),
      nfe: z.number().int(),
      /** The ODE solver that answered (a fallback names itself). */
      solver: z.string(),
      seconds: z.number(),
    }),
    event: ProgressSchema,
    doc: "a toy model's ODE log-density (exact divergence) on a 1-D / 2-D grid, and the true one",
  }),
  "toy.nll": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      /** Fresh test samples, drawn from `seed` independently of training. */
      n: z.number().int().positive().default(2000),
      seed: z.number().int().nonnegative().default(0),
      batchSize: z.number().int().positive().optional(),
      ...odeArgs,
    }),
    result: ToyNllResultSchema,
    event: ProgressSchema,
    doc: "mean NLL (nats) of fresh test samples under a toy model by the ODE, beside the entropy floor",
  }),
  "toy.samples": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      n: z.number().int().positive().default(2000),
      seed: z.number().int().nonnegative().default(0),
      /** Default: the experiment's sampling.method. ODE keys and PC keys are exclusive (`steps`,
       *  the fixed-step solvers' step count, is ignored by dopri5 and the PC sampler). */
      method: z.enum(["ode", "pc"]).optional(),
      eps: z.number().min(0).max(1).optional(),
      noiseRemoval: z.boolean().optional(),
      solver: solver.optional(),
      rtol: z.number().positive().optional(),
      atol: z.number().positive().optional(),
      steps: z.number().int().positive().default(100),
      predictor: z.enum(["reverse_diffusion", "euler_maruyama", "none"]).optional(),
      corrector: z.enum(["langevin", "none"]).optional(),
      snr: z.number().nonnegative().optional(),
      nStepsEach: z.number().int().positive().optional(),
      N: z.number().int().positive().optional(),
    }),
    result: z.object({ x: tensorSchema, nfe: z.number().int(), method: z.enum(["ode", "pc"]), seconds: z.number() }),
    event: ProgressSchema,
    doc: "samples [n, D] of a toy model by the probability-flow ODE or the PC sampler",
  }),
  "toy.diagnostics": defineOp({
    args: z.strictObject({
      model: z.string(),
      weights: weightsArg,
      /** Times in (0, 1] (log-spaced in the toy job). */
      t: z.array(z.number().gt(0).max(1)).min(1),
      /** Data points perturbed to each t, drawn from `seed` as toy.nll's. */
      n: z.number().int().positive().default(256),
      seed: z.number().int().nonnegative().default(0),
      /** Also the ScoreODE's own score and its Fisher divergence (two ODE solves per t). */
      ode: z.boolean().default(true),
      /** Tolerances of those ODE solves. */
      rtol: z.number().positive().default(1e-5),
      atol: z.number().positive().default(1e-5),
    }),
    result: ToyDiagnosticsResultSchema,
    event: ProgressSchema,
    doc: "a toy model's mechanism curves along t: score-FPE residual, ‖σ·s‖, score error, ScoreODE Fisher divergence",
  }),
  "plot.toy": defineOp({
    args: z.strictObject({
      path: z.string().min(1),
      title: z.string().optional(),
      panels: z.array(PanelSchema).min(1),
      columns: z.number().int().positive().optional(),
      /** One colour scale for every density panel. */
      sharedScale: z.boolean().default(true),
      /** Inches per panel. */
      panelSize: z.number().min(1).max(20).default(3.2),
    }),
    result: SavedPngSchema,
    doc: "a PNG of toy panels side by side: density heat-maps, sample scatters, 1-D density curves, lines, bars",
  }),
  "plot.lines": defineOp({
    args: z.strictObject({
      path: z.string().min(1),
      series: z.array(z.strictObject(lineSeries)).min(1),
      title: z.string().optional(),
      ...lineAxes,
    }),
    result: SavedPngSchema,
    doc: "a PNG line plot (ablations) with optional error bars and a reference line",
  }),
} as const;

/**
 * Loss expressions: a sum of terms, each logged separately. Terms: first-order DSM (docs/maths.md §4),
 * the error-bounded high-order DSM parts ℓ₂ / ℓ₃ (docs/maths.md §6) and the score Fokker–Planck regulariser
 * (docs/maths.md §5). `loss.dsm({...}).plus(loss.scoreFpe({...}))` builds one expression; the `plus` method
 * is non-enumerable, so the JSON of an expression is exactly `{terms: [...]}`.
 */
import { z } from "zod";
import { ConfigError, parseOrThrow } from "./errors.js";

export const DsmTermSchema = z.strictObject({
  kind: z.literal("dsm"),
  /** "conventional": ‖s·std + z‖²; "likelihood": g²·‖s + z/std‖². */
  weighting: z.enum(["conventional", "likelihood"]).default("conventional"),
  /** Draw t ∝ g²/std² and use the unweighted loss (score_flow); needs likelihood weighting. */
  importanceSampling: z.boolean().default(false),
  /** Reduction over the D dimensions: mean, or ½·sum (Score SDE's `reduce_mean = False`). */
  reduce: z.enum(["mean", "sum"]).default("sum"),
  /** Smallest time: t ~ U[eps, 1]. */
  eps: z.number().positive().lt(1).default(1e-5),
});

export const HIGH_ORDER_PARTS = ["frobenius", "trace"] as const;

export const HighOrderLambdasSchema = z.strictObject({
  second: z.number().min(0).default(1),
  third: z.number().min(0).default(1),
});

export const HighOrderTermSchema = z.strictObject({
  kind: z.literal("highOrder"),
  /** 2: ℓ₂; 3: ℓ₂ + ℓ₃. */
  order: z.union([z.literal(2), z.literal(3)], { error: "order must be 2 or 3" }),
  /** Which parts of ℓ₂: the Frobenius (full Jacobian) part and/or the trace part. */
  parts: z
    .array(z.enum(HIGH_ORDER_PARTS))
    .min(1)
    .refine((p) => new Set(p).size === p.length, { message: "parts must not repeat" })
    .meta({ uniqueItems: true })
    .default(["frobenius", "trace"]),
  /** Weights of ℓ₂ and ℓ₃ (CIFAR-10: 1 and 1; toys: 0.5 and 0.1). */
  lambdas: HighOrderLambdasSchema.default({ second: 1, third: 1 }),
  /** "exact": full Jacobians (small D); "hutchinson": one probe v and one JVP (images). */
  estimator: z.enum(["exact", "hutchinson"]).default("hutchinson"),
  probe: z.enum(["rademacher", "gaussian"]).default("rademacher"),
});

/** Steps of the asymmetric 3-point stencil: s at t − hs, t and t + hd. */
export const FiniteDifferenceStepsSchema = z.strictObject({
  hs: z.number().positive().default(1e-3),
  hd: z.number().positive().default(5e-4),
});

export const FiniteDifferenceSchema = z.strictObject({
  finiteDifference: FiniteDifferenceStepsSchema.default({ hs: 1e-3, hd: 5e-4 }),
});

/**
 * Dimension-free weights of the score-FPE terms (docs/score-fpe-scale.md): instead of α / β, the
 * share of the loss total each weighted term takes at the start of training. Training measures the
 * unweighted terms and the rest of the loss on `batches` of its own first batches (the model as it
 * starts: fresh, fine-tuned or resumed from scratch) and sets α = share·L / vector, β = share·L /
 * scalar; the values are written to the run directory (score_fpe_calibration.json) and reused when
 * the run resumes. A share left out keeps its `alpha` / `beta`; a share given replaces the
 * weight (lint warns when that weight was not the default).
 */
export const ScoreFpeCalibrationSchema = z
  .strictObject({
    /** α·vector / total at the start, in (0, 1). */
    vectorShare: z.number().gt(0).lt(1).optional(),
    /** β·scalar / total at the start, in (0, 1). */
    scalarShare: z.number().gt(0).lt(1).optional(),
    /** Training batches the shares are measured on. */
    batches: z.number().int().positive().default(4),
  })
  .refine((c) => c.vectorShare !== undefined || c.scalarShare !== undefined, {
    message: "calibrate needs vectorShare and/or scalarShare",
    path: ["vectorShare"],
  })
  .refine((c) => (c.vectorShare ?? 0) + (c.scalarShare ?? 0) < 1, {
    message: "vectorShare + scalarShare must be below 1 (the rest of the loss keeps the remainder)",
    path: ["vectorShare"],
  });

export const ScoreFpeTermSchema = z.strictObject({
  kind: z.literal("scoreFpe"),
  /** "scalar": β·scalar term only; "vector": α·residual term only; "both". */
  mode: z.enum(["scalar", "vector", "both"]).default("both"),
  /** Weight of the vector (residual) term. */
  alpha: z.number().min(0).default(0.15),
  /** Weight of the scalar term. */
  beta: z.number().min(0).default(0.01),
  /** Exponent of the residual norm ‖r‖₂^m. */
  m: z.number().positive().default(2),
  /** w(t): 1, g, or g². */
  weighting: z.enum(["constant", "convention", "ll"]).default("ll"),
  /** Where the residual is evaluated: the DSM's x_t, the clean data, or uniform in the batch range. */
  points: z.enum(["pert", "x", "random"]).default("pert"),
  /** ∂t s: forward-mode autodiff, or the reference's asymmetric 3-point finite difference. */
  dt: z
    .union([z.literal("autodiff"), FiniteDifferenceSchema], {
      error: 'dt must be "autodiff" or {finiteDifference: {hs, hd}}',
    })
    .default("autodiff"),
  /** ∇·s: exact trace of the Jacobian, or one Hutchinson probe. */
  div: z.enum(["exact", "hutchinson"]).default("hutchinson"),
  /** Probe of the Hutchinson divergence (the reference draws Gaussian probes). */
  probe: z.enum(["gaussian", "rademacher"]).default("gaussian"),
  /** Set α / β from their share of the loss at the start of training (dimension-free); absent: α, β as given. */
  calibrate: ScoreFpeCalibrationSchema.optional(),
});

export const LossTermSchema = z.discriminatedUnion("kind", [
  DsmTermSchema,
  HighOrderTermSchema,
  ScoreFpeTermSchema,
]);

export const LossSchema = z.strictObject({
  terms: z.array(LossTermSchema).min(1, { error: "a loss needs at least one term" }),
});

export type DsmTerm = z.infer<typeof DsmTermSchema>;
export type HighOrderTerm = z.infer<typeof HighOrderTermSchema>;
export type ScoreFpeTerm = z.infer<typeof ScoreFpeTermSchema>;
export type ScoreFpeCalibration = z.infer<typeof ScoreFpeCalibrationSchema>;
export type LossTerm = z.infer<typeof LossTermSchema>;
export type LossKind = LossTerm["kind"];
export type Loss = z.infer<typeof LossSchema>;

/** A loss expression as the builders return it: plain data plus a non-enumerable `plus`. */
export type LossExpr = Loss & { readonly plus: (other: Loss) => LossExpr };

/** Wraps `{terms}` with the non-enumerable `plus` method. */
export function lossExpr(terms: LossTerm[]): LossExpr {
  const expr = { terms } as Loss;
  Object.defineProperty(expr, "plus", {
    value: (other: Loss): LossExpr => {
      if (!other || !Array.isArray((other as Loss).terms)) {
        throw new ConfigError([
          { path: "loss", message: "plus() takes a loss expression such as loss.dsm({...})" },
        ]);
      }
      return lossExpr([...terms, ...other.terms]);
    },
    enumerable: false,
  });
  return expr as LossExpr;
}

type Opts<S extends z.ZodType> = Omit<z.input<S>, "kind">;

function term<S extends z.ZodType>(schema: S, kind: LossKind, opts: object, name: string) {
  return lossExpr([
    parseOrThrow(schema, { ...opts, kind }, "", `loss.${name}()`) as LossTerm,
  ]);
}

/** Builders: `loss.dsm({...})`, `loss.highOrder({order: 2})`, `loss.scoreFpe({...})`, `loss.sum(...)`. */
export const loss = {
  dsm: (opts: Opts<typeof DsmTermSchema> = {}): LossExpr =>
    term(DsmTermSchema, "dsm", opts, "dsm"),
  highOrder: (opts: Opts<typeof HighOrderTermSchema>): LossExpr =>
    term(HighOrderTermSchema, "highOrder", opts, "highOrder"),
  scoreFpe: (opts: Opts<typeof ScoreFpeTermSchema> = {}): LossExpr =>
    term(ScoreFpeTermSchema, "scoreFpe", opts, "scoreFpe"),
  /** The sum of several expressions. */
  sum: (...exprs: Loss[]): LossExpr => lossExpr(exprs.flatMap((e) => e.terms)),
};

/**
 * Forward SDEs (Score SDE conventions) and their schedules, evaluated in TypeScript for display,
 * validation and the cross-language tests. Formulas: docs/maths.md §2.
 */
import { z } from "zod";
import { builders } from "./builder.js";

const positive = () => z.number().positive();
const steps = () => z.number().int().positive();

export const VeSdeSchema = z
  .strictObject({
    kind: z.literal("ve"),
    sigmaMin: positive().default(0.01),
    sigmaMax: positive().default(50),
    N: steps().default(1000),
  })
  .refine((s) => s.sigmaMin < s.sigmaMax, {
    message: "sigmaMin must be smaller than sigmaMax",
    path: ["sigmaMax"],
  });

/**
 * How VP / subVP compute 1 − e^{2c(t)} in std(t) (and subVP's g² discount 1 − e^{−2∫β}):
 * "stable" −expm1 (fpdiff's default, accurate in float32); "original" 1 − exp as Score SDE and
 * FP-Diffusion compute it (in float32 std is off by up to ~1 % near t = ε, which moves their
 * losses); "scoreflow" score_flow / mle_score_ode's first-order branch (−2c and mean factor 1 + c
 * where |c| ≤ 1e-3, else 1 − exp).
 */
export const StdFormulaSchema = z.enum(["stable", "original", "scoreflow"]);
export type StdFormula = z.infer<typeof StdFormulaSchema>;

const betaShape = {
  betaMin: positive().default(0.1),
  betaMax: positive().default(20),
  N: steps().default(1000),
  stdFormula: StdFormulaSchema.default("stable"),
};
const betaOrder = {
  message: "betaMin must not exceed betaMax",
  path: ["betaMax"],
};

export const VpSdeSchema = z
  .strictObject({ kind: z.literal("vp"), ...betaShape })
  .refine((s) => s.betaMin <= s.betaMax, betaOrder);
export const SubVpSdeSchema = z
  .strictObject({ kind: z.literal("subvp"), ...betaShape })
  .refine((s) => s.betaMin <= s.betaMax, betaOrder);

export const SdeSchema = z.discriminatedUnion("kind", [VeSdeSchema, VpSdeSchema, SubVpSdeSchema]);

export type VeSde = z.infer<typeof VeSdeSchema>;
export type VpSde = z.infer<typeof VpSdeSchema>;
export type SubVpSde = z.infer<typeof SubVpSdeSchema>;
export type Sde = z.infer<typeof SdeSchema>;
export type SdeKind = Sde["kind"];

/** Builders: `sde.ve({sigmaMax: 80})`, `sde.vp()`, `sde.subvp({betaMax: 19.9})`. */
export const sde = builders("sde", { ve: VeSdeSchema, vp: VpSdeSchema, subvp: SubVpSdeSchema });

/** The Score SDE name of the SDE (`training.sde` in the original configs). */
export const ORIGINAL_SDE_NAME: Record<SdeKind, string> = {
  ve: "vesde",
  vp: "vpsde",
  subvp: "subvpsde",
};

/** 1 − e^{a} (a ≤ 0) by a std formula; "scoreflow" takes −a where |a| ≤ `branch`. */
function oneMinusExp(formula: StdFormula, a: number, branch: number): number {
  if (formula === "stable") return -Math.expm1(a);
  if (formula === "scoreflow" && Math.abs(a) <= branch) return -a;
  return 1 - Math.exp(a);
}

/** The terminal time T of every SDE here. */
export const T = 1;

/**
 * Schedules of an SDE at time t (scalars). VE: σ(t), g² = σ²·2ln(σmax/σmin), std = σ, mean coef 1.
 * VP / subVP: β(t), c(t) = −¼t²(βmax−βmin) − ½tβmin, mean coef e^c, VP std √(1−e^{2c}), subVP std
 * 1 − e^{2c}, VP g² = β, subVP g² = β(1 − e^{−2βmin t − (βmax−βmin)t²}).
 */
export const schedule = {
  /** σ(t) of the VE SDE. */
  sigma(s: VeSde, t: number): number {
    return s.sigmaMin * Math.pow(s.sigmaMax / s.sigmaMin, t);
  },
  /** β(t) of the VP / subVP SDEs. */
  beta(s: VpSde | SubVpSde, t: number): number {
    return s.betaMin + t * (s.betaMax - s.betaMin);
  },
  /** c(t), the log of the mean coefficient of VP / subVP. */
  logMeanCoef(s: VpSde | SubVpSde, t: number): number {
    return -0.25 * t * t * (s.betaMax - s.betaMin) - 0.5 * t * s.betaMin;
  },
  /** mean(x0, t) = meanCoef(t)·x0 (score_flow's branch: 1 + c where |c| ≤ 1e-3). */
  meanCoef(s: Sde, t: number): number {
    if (s.kind === "ve") return 1;
    const c = schedule.logMeanCoef(s, t);
    return s.stdFormula === "scoreflow" && Math.abs(c) <= 1e-3 ? 1 + c : Math.exp(c);
  },
  /** std(t) of the perturbation kernel, by the SDE's `stdFormula` (in double precision). */
  std(s: Sde, t: number): number {
    if (s.kind === "ve") return schedule.sigma(s, t);
    const oneMinus = oneMinusExp(s.stdFormula, 2 * schedule.logMeanCoef(s, t), 2e-3);
    return s.kind === "vp" ? Math.sqrt(oneMinus) : oneMinus;
  },
  /** g(t)², the squared diffusion coefficient. */
  g2(s: Sde, t: number): number {
    if (s.kind === "ve") {
      const sig = schedule.sigma(s, t);
      return sig * sig * 2 * Math.log(s.sigmaMax / s.sigmaMin);
    }
    const b = schedule.beta(s, t);
    if (s.kind === "vp") return b;
    return b * oneMinusExp(s.stdFormula, -2 * s.betaMin * t - (s.betaMax - s.betaMin) * t * t, 1e-3);
  },
  /** g(t). */
  diffusion(s: Sde, t: number): number {
    return Math.sqrt(schedule.g2(s, t));
  },
  /** The time label the original network receives: VE σ(t), VP / subVP 999·t. */
  label(s: Sde, t: number): number {
    return s.kind === "ve" ? schedule.sigma(s, t) : 999 * t;
  },
  /** Standard deviation of the prior N(0, σ²I): σmax for VE, 1 otherwise. */
  priorStd(s: Sde): number {
    return s.kind === "ve" ? s.sigmaMax : 1;
  },
};

/**
 * Score networks. NCSN++ carries every field of the Score SDE `config.model` (camelCased); Score
 * SDE's DDPM++ *is* its NCSN++ class with other options, so `kind: "ddpmpp"` only selects those
 * defaults. The toy MLP is the high-order paper's toy network (docs/maths.md §7.1).
 */
import { z } from "zod";
import { builders } from "./builder.js";

const posInt = () => z.number().int().positive();
const rate = () => z.number().min(0).lt(1);

/** Defaults of one NCSN++ flavour: the CIFAR-10 continuous configs of Score SDE. */
interface NcsnppDefaults {
  scaleBySigma: boolean;
  emaRate: number;
  fir: boolean;
  progressiveInput: "none" | "input_skip" | "residual";
  embeddingType: "fourier" | "positional";
}

function ncsnppShape<K extends "ncsnpp" | "ddpmpp">(kind: K, d: NcsnppDefaults) {
  return z.strictObject({
    kind: z.literal(kind),
    nf: posInt().default(128),
    chMult: z.array(posInt()).min(1).default([1, 2, 2, 2]),
    numResBlocks: posInt().default(4),
    attnResolutions: z.array(posInt()).default([16]),
    dropout: rate().default(0.1),
    resampWithConv: z.boolean().default(true),
    fir: z.boolean().default(d.fir),
    firKernel: z.array(z.number().int()).min(1).default([1, 3, 3, 1]),
    skipRescale: z.boolean().default(true),
    resblockType: z.enum(["ddpm", "biggan"]).default("biggan"),
    progressive: z.enum(["none", "output_skip", "residual"]).default("none"),
    progressiveInput: z.enum(["none", "input_skip", "residual"]).default(d.progressiveInput),
    progressiveCombine: z.enum(["sum", "cat"]).default("sum"),
    attentionType: z.enum(["ddpm"]).default("ddpm"),
    initScale: z.number().min(0).default(0),
    embeddingType: z.enum(["fourier", "positional"]).default(d.embeddingType),
    fourierScale: z.number().positive().default(16),
    convSize: posInt().default(3),
    scaleBySigma: z.boolean().default(d.scaleBySigma),
    emaRate: rate().default(d.emaRate),
    normalization: z.enum(["GroupNorm"]).default("GroupNorm"),
    nonlinearity: z.enum(["elu", "relu", "lrelu", "swish"]).default("swish"),
    conditional: z.boolean().default(true),
    sigmaMin: z.number().positive().default(0.01),
    sigmaMax: z.number().positive().default(50),
    numScales: posInt().default(1000),
    betaMin: z.number().positive().default(0.1),
    betaMax: z.number().positive().default(20),
  });
}

/** NCSN++ (VE CIFAR-10 continuous defaults: Fourier embedding, FIR, residual input path). */
export const NcsnppSchema = ncsnppShape("ncsnpp", {
  scaleBySigma: true,
  emaRate: 0.999,
  fir: true,
  progressiveInput: "residual",
  embeddingType: "fourier",
});

/** DDPM++ = NCSN++ with the VP CIFAR-10 continuous defaults (positional embedding, no FIR). */
export const DdpmppSchema = ncsnppShape("ddpmpp", {
  scaleBySigma: false,
  emaRate: 0.9999,
  fir: false,
  progressiveInput: "none",
  embeddingType: "positional",
});

/**
 * Toy MLP: sinusoidal time embedding (embedDim) → MLP(timeHidden) → width; x → MLP(xHidden) →
 * width; concatenation → MLP(hidden) → D. `param: "eps"` means the network predicts ε̂ and the
 * score is ε̂/std(t); `"score"` means it outputs the score directly.
 */
export const MlpSchema = z.strictObject({
  kind: z.literal("mlp"),
  embedDim: posInt().default(64),
  timeHidden: z.array(posInt()).default([128, 128]),
  xHidden: z.array(posInt()).default([128, 128]),
  width: posInt().default(128),
  hidden: z.array(posInt()).default([512, 512]),
  nonlinearity: z.enum(["swish", "relu", "elu", "tanh"]).default("swish"),
  emaRate: rate().default(0.999),
  param: z.enum(["eps", "score"]).default("eps"),
});

export const ModelSchema = z.discriminatedUnion("kind", [NcsnppSchema, DdpmppSchema, MlpSchema]);

export type Ncsnpp = z.infer<typeof NcsnppSchema>;
export type Ddpmpp = z.infer<typeof DdpmppSchema>;
export type Mlp = z.infer<typeof MlpSchema>;
export type Model = z.infer<typeof ModelSchema>;
/** NCSN++ or DDPM++ — the one Score SDE network class. */
export type ImageModel = Ncsnpp | Ddpmpp;

/** Builders: `model.ncsnpp({numResBlocks: 8})`, `model.ddpmpp()`, `model.mlp()`. */
export const model = builders("model", { ncsnpp: NcsnppSchema, ddpmpp: DdpmppSchema, mlp: MlpSchema });

export function isImageModel(m: Model): m is ImageModel {
  return m.kind === "ncsnpp" || m.kind === "ddpmpp";
}

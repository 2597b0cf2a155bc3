/**
 * The experiment: one plain JSON object (docs/contracts.md §1) assembled from the sections, with
 * the defaults that depend on other sections resolved and the cross-field rules checked.
 *
 * `ExperimentSchema` parses an experiment *input* (sections may leave context-dependent fields
 * out) into the resolved experiment; parsing a resolved experiment again returns it unchanged.
 */
import { z } from "zod";
import { ConfigError, formatPath, parseOrThrow, type ConfigIssue, type PathSegment } from "./errors.js";
import { SdeSchema, type Sde } from "./sde.js";
import { ModelSchema, isImageModel } from "./model.js";
import { DataSchema, ResolvedDataSchema, TOY_DIMS, dataDim, isImageData } from "./data.js";
import { LossSchema, ScoreFpeTermSchema, type LossTerm } from "./loss.js";
import { OptimSchema } from "./optim.js";
import {
  EvalSchema,
  ResolvedEvalSchema,
  ResolvedSamplingSchema,
  SamplingSchema,
  TrainingSchema,
} from "./training.js";

/** Largest data dimension for which full Jacobians ("exact" high-order estimator) are allowed. */
export const EXACT_JACOBIAN_MAX_DIM = 64;

const nameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, {
  error: "name must start with a letter or digit and use only letters, digits, '.', '_', '-', '/'",
});

/** What `experiment()` accepts: context-dependent fields may be absent. */
const ExperimentInputSchema = z.strictObject({
  name: nameSchema,
  description: z.string().optional(),
  sde: SdeSchema,
  model: ModelSchema,
  data: DataSchema,
  loss: LossSchema,
  optim: OptimSchema.prefault({ kind: "adam" }),
  training: TrainingSchema.prefault({}),
  eval: EvalSchema.prefault({}),
  /** Absent: Score SDE's PC sampler for the SDE (VE: reverse diffusion + Langevin; VP: Euler–Maruyama). */
  sampling: SamplingSchema.optional(),
});

/**
 * The resolved experiment: what travels to the worker. Every context-dependent field is present
 * (sampling with N and eps, eval.bpd.divergence / dequantize, toy data dim); parsing a resolved
 * experiment with it changes nothing. Python validates the wire against the JSON Schema of this.
 */
export const ResolvedExperimentSchema = z.strictObject({
  name: nameSchema,
  description: z.string().optional(),
  sde: SdeSchema,
  model: ModelSchema,
  data: ResolvedDataSchema,
  loss: LossSchema,
  optim: OptimSchema,
  training: TrainingSchema,
  eval: ResolvedEvalSchema,
  sampling: ResolvedSamplingSchema,
});

type Input = z.output<typeof ExperimentInputSchema>;
type Resolved = z.input<typeof ResolvedExperimentSchema>;

/** Score SDE's smallest sampling time: 1e-5 for VE, 1e-3 for VP / subVP. */
export function defaultSamplingEps(s: Sde): number {
  return s.kind === "ve" ? 1e-5 : 1e-3;
}

/** Fills the fields whose defaults depend on other sections (the pipe orders the keys). */
function resolve(e: Input): Resolved {
  const s =
    e.sampling ??
    (e.sde.kind === "ve"
      ? SamplingSchema.parse({ method: "pc", predictor: "reverse_diffusion", corrector: "langevin" })
      : SamplingSchema.parse({ method: "pc", predictor: "euler_maruyama", corrector: "none" }));
  const eps = s.eps ?? defaultSamplingEps(e.sde);
  const sampling = s.method === "pc" ? { ...s, N: s.N ?? e.sde.N, eps } : { ...s, eps };
  const image = isImageData(e.data);
  const bpd = {
    ...e.eval.bpd,
    divergence: e.eval.bpd.divergence ?? (image ? "hutchinson" : "exact"),
    dequantize: e.eval.bpd.dequantize ?? image,
  } as const;
  return { ...e, eval: { ...e.eval, bpd }, sampling };
}

/** A cross-field problem: `path` as an array, for zod and for formatting. */
interface Problem {
  path: PathSegment[];
  message: string;
}

const fmt = (v: unknown) => JSON.stringify(v);

function termsOf<K extends LossTerm["kind"]>(
  terms: LossTerm[],
  kind: K,
): Array<{ term: Extract<LossTerm, { kind: K }>; index: number }> {
  const out: Array<{ term: Extract<LossTerm, { kind: K }>; index: number }> = [];
  terms.forEach((term, index) => {
    if (term.kind === kind) out.push({ term: term as Extract<LossTerm, { kind: K }>, index });
  });
  return out;
}

/** The errors of an experiment whose sections are each valid: rules that span fields. */
export function crossFieldErrors(e: Experiment): Problem[] {
  const errs: Problem[] = [];
  const add = (path: PathSegment[], message: string) => errs.push({ path, message });
  const { sde, model, data } = e;
  const D = dataDim(data);

  // Model ↔ data.
  if (model.kind === "mlp" && isImageData(data)) {
    add(["model", "kind"], `an mlp model needs toy data, but data.kind is ${fmt(data.kind)}; use model.ncsnpp() or model.ddpmpp() for images`);
  }
  if (isImageModel(model) && !isImageData(data)) {
    add(["model", "kind"], `an ${model.kind} model needs image data, but data.kind is "toy"; use model.mlp() for toy data`);
  }
  if (data.kind === "toy") {
    const want = TOY_DIMS[data.dataset];
    if (want !== null && data.dim !== want) {
      add(["data", "dim"], `${data.dataset} lives in ${want} dimension${want === 1 ? "" : "s"}, got dim ${data.dim}`);
    }
  }

  // The network's copies of the SDE's fields (one field in the original config).
  if (isImageModel(model)) {
    const mirror = (field: "sigmaMin" | "sigmaMax" | "betaMin" | "betaMax", sdeValue: number) => {
      if (model[field] !== sdeValue) {
        add(["model", field], `must equal sde.${field} (${sdeValue}), got ${model[field]}: the original keeps one field for both (the network builds its sigma buffer from it); set both`);
      }
    };
    if (sde.kind === "ve") {
      mirror("sigmaMin", sde.sigmaMin);
      mirror("sigmaMax", sde.sigmaMax);
    } else {
      mirror("betaMin", sde.betaMin);
      mirror("betaMax", sde.betaMax);
    }
    if (model.numScales !== sde.N) {
      add(["model", "numScales"], `must equal sde.N (${sde.N}), got ${model.numScales}: the original keeps one field (model.num_scales) for both; set both`);
    }
    if (isImageData(data)) {
      const levels = model.chMult.length;
      const factor = 2 ** (levels - 1);
      if (data.imageSize % factor !== 0) {
        add(["model", "chMult"], `${levels} resolution levels halve the image ${levels - 1} times, which needs imageSize divisible by ${factor}, got ${data.imageSize}`);
      } else {
        const resolutions = Array.from({ length: levels }, (_, i) => data.imageSize / 2 ** i);
        model.attnResolutions.forEach((r, i) => {
          if (!resolutions.includes(r)) {
            add(["model", "attnResolutions", i], `${r} is not a resolution of this network (${resolutions.join(", ")})`);
          }
        });
      }
    }
  }

  // Loss expression.
  const terms = e.loss.terms;
  const firstOfKind = new Map<string, number>();
  terms.forEach((t, i) => {
    const first = firstOfKind.get(t.kind);
    if (first === undefined) firstOfKind.set(t.kind, i);
    else add(["loss", "terms", i, "kind"], `a second ${fmt(t.kind)} term (loss.terms[${first}] is one already); a loss holds at most one term of each kind`);
  });
  const dsm = termsOf(terms, "dsm")[0];
  for (const { term, index } of termsOf(terms, "dsm")) {
    if (term.importanceSampling && term.weighting !== "likelihood") {
      add(["loss", "terms", index, "importanceSampling"], `importance sampling of t goes with likelihood weighting; set weighting: "likelihood" or importanceSampling: false`);
    }
  }
  for (const { term, index } of termsOf(terms, "highOrder")) {
    if (isImageData(data) && dsm && dsm.term.reduce !== "mean") {
      add(["loss", "terms", dsm.index, "reduce"], `a high-order image loss needs reduce: "mean" (its terms are per-dimension means; the original asserts reduce_mean), got ${fmt(dsm.term.reduce)}`);
    }
    if (term.estimator === "exact" && D > EXACT_JACOBIAN_MAX_DIM) {
      add(["loss", "terms", index, "estimator"], `the exact high-order estimator builds full D×D Jacobians and allows D ≤ ${EXACT_JACOBIAN_MAX_DIM}; this data has D = ${D}: use estimator: "hutchinson"`);
    }
  }
  for (const { term, index } of termsOf(terms, "scoreFpe")) {
    const cal = term.calibrate;
    if (cal?.vectorShare !== undefined && term.mode === "scalar") {
      add(["loss", "terms", index, "calibrate", "vectorShare"], `mode "scalar" has no vector term to calibrate; use mode "vector" or "both", or drop vectorShare`);
    }
    if (cal?.scalarShare !== undefined && term.mode === "vector") {
      add(["loss", "terms", index, "calibrate", "scalarShare"], `mode "vector" has no scalar term to calibrate; use mode "scalar" or "both", or drop scalarShare`);
    }
    if (cal && !terms.some((t) => t.kind !== "scoreFpe")) {
      add(["loss", "terms", index, "calibrate"], "a share of the loss needs another term (dsm or highOrder) to be a share of");
    }
  }

  // Evaluation.
  if (!isImageData(data) && e.eval.bpd.dequantize) {
    add(["eval", "bpd", "dequantize"], "toy data are continuous: dequantize must be false");
  }
  return errs;
}

/** The score-FPE term's weights when none are given. */
const SCORE_FPE_DEFAULTS = ScoreFpeTermSchema.parse({ kind: "scoreFpe" });

/** Legitimate but unusual combinations: reported by `fpd config validate` and `show`, never fatal. */
export function lint(e: Experiment): ConfigIssue[] {
  const warns: ConfigIssue[] = [];
  const add = (path: PathSegment[], message: string) => warns.push({ path: formatPath(path), message });
  const { sde, model, data } = e;
  const D = dataDim(data);
  if (isImageModel(model)) {
    if (sde.kind === "ve" && model.kind === "ddpmpp") {
      add(["model", "kind"], "a DDPM++ model with a VE SDE is unusual: the originals pair VE with NCSN++ (Fourier embedding, scaleBySigma)");
    }
    if (sde.kind === "ve" && model.embeddingType === "positional") {
      add(["model", "embeddingType"], "VE feeds the network the label σ(t); a positional embedding expects 999·t (VP / subVP)");
    }
    if (sde.kind !== "ve" && model.embeddingType === "fourier") {
      add(["model", "embeddingType"], `${sde.kind} feeds the network the label 999·t; the Fourier embedding expects σ(t) (VE)`);
    }
    if (sde.kind !== "ve" && model.scaleBySigma) {
      add(["model", "scaleBySigma"], `scaleBySigma divides the output by the VE σ of the label, but ${sde.kind} already divides by std(t)`);
    }
  }
  const terms = e.loss.terms;
  if (terms.some((t) => t.kind === "highOrder") && !terms.some((t) => t.kind === "dsm")) {
    add(["loss", "terms"], "a highOrder term without a dsm term: the error bounds of ℓ₂ / ℓ₃ assume ℓ₁ is trained too");
  }
  terms.forEach((t, i) => {
    if (t.kind === "dsm" && t.importanceSampling && sde.kind === "ve") {
      add(["loss", "terms", i, "importanceSampling"], "for VE the importance density g²/std² is uniform; importance sampling only drops the constant weight");
    }
    if (t.kind === "scoreFpe") {
      if (t.mode !== "scalar" && t.alpha === 0) add(["loss", "terms", i, "alpha"], `alpha = 0 switches the vector term of mode ${fmt(t.mode)} off`);
      if (t.mode !== "vector" && t.beta === 0) add(["loss", "terms", i, "beta"], `beta = 0 switches the scalar term of mode ${fmt(t.mode)} off`);
      // A calibrated share sets the weight when training starts, so a weight the user chose would be lost unnoticed.
      for (const [share, weight] of [["vectorShare", "alpha"], ["scalarShare", "beta"]] as const) {
        if (t.calibrate?.[share] !== undefined && t[weight] !== SCORE_FPE_DEFAULTS[weight]) {
          add(["loss", "terms", i, weight], `${weight} = ${t[weight]} is replaced when training starts by the value calibrate.${share} gives; drop one of them`);
        }
      }
      if (t.div === "exact" && D > EXACT_JACOBIAN_MAX_DIM) {
        add(["loss", "terms", i, "div"], `the exact divergence costs D = ${D} backward passes per step`);
      }
    }
  });
  if (e.eval.bpd.divergence === "exact" && D > EXACT_JACOBIAN_MAX_DIM) {
    add(["eval", "bpd", "divergence"], `the exact divergence costs D = ${D} backward passes per ODE function evaluation`);
  }
  return warns;
}

/** The experiment schema: input → resolved experiment, with every cross-field rule checked. */
export const ExperimentSchema = ExperimentInputSchema.transform(resolve)
  .pipe(ResolvedExperimentSchema)
  .superRefine((e, ctx) => {
  for (const p of crossFieldErrors(e)) ctx.addIssue({ code: "custom", path: p.path, message: p.message });
});

/** The resolved experiment: every field present (optional ones only where absent means "none"). */
export type Experiment = z.output<typeof ExperimentSchema>;
/** What `experiment()` accepts: sections as the builders return them, or plain JSON. */
export type ExperimentInput = z.input<typeof ExperimentSchema>;

/**
 * Assembles and checks an experiment. Throws a ConfigError listing every problem with its path.
 * Idempotent: `experiment(experiment(x))` equals `experiment(x)`.
 */
export function experiment(input: ExperimentInput): Experiment {
  return parseOrThrow(ExperimentSchema, input, "", "experiment");
}

/** Validates without throwing: the resolved experiment, or the problems with their paths. */
export function validateExperiment(
  input: unknown,
): { ok: true; experiment: Experiment; warnings: ConfigIssue[] } | { ok: false; errors: ConfigIssue[] } {
  try {
    const exp = experiment(input as ExperimentInput);
    return { ok: true, experiment: exp, warnings: lint(exp) };
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, errors: err.issues };
    throw err;
  }
}

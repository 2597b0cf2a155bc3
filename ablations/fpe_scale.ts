/**
 * How big the score-FPE terms are against the DSM loss, at D = 3072 and at D = 2 / 1: the anchor
 * of the dimension-free weights (`calibrate` on the scoreFpe term; docs/score-fpe-scale.md).
 *
 * For each network, `loss.eval` of FP-Diffusion's CIFAR-10 loss (the fp/ preset's: likelihood-
 * weighted DSM + 'both', g² weighting, α 0.15, β 0.01; m = 2, and m = 1 beside it) on the same
 * draws: the unweighted DSM, vector and scalar terms and the share α·vector / total and β·scalar /
 * total they take. Networks: the original-format NCSN++ / DDPM++ fixtures with nf = 8 (random
 * weights, as the Score SDE code initialises them) on random images (white noise, and smooth
 * synthetic images), the full-width NCSN++ (nf = 128, random init) on a few images, and the toy
 * MLP of the α study, random and after its DSM base training, under both the FP-Diffusion loss
 * form and the toy's own DSM (conventional weighting, per-dimension mean).
 *
 *   fpd ablate ablations/fpe_scale.ts --out ablations/results/fpe_scale --param bases=<fpe_alpha's --out>   # ~30 min on 2 CPU cores
 *   fpd ablate ablations/fpe_scale.ts --param checkpoint=exp/ve/cifar10_ncsnpp_continuous/checkpoints/checkpoint_26.pth \
 *       --param data=/data/cifar-10-batches-py --device cuda      # + the anchor on a trained network (not run here)
 */
import { join, resolve } from "node:path";
import { defineAblation, toyExperiment } from "../src/api/index.js";
import { schedule, type Sde } from "../src/dsl/index.js";
import { loadExperiment } from "../src/dsl/load.js";
import { PROJECT_ROOT } from "../src/paths.js";
import type { Tensor } from "../src/protocol/tensor.js";
import { ensureBase, netOverrides, type Protocol, type ToyData } from "./lib/finetune.js";

const FIXTURES = join(PROJECT_ROOT, "test", "fixtures", "reference");

type Case = {
  net: string;
  /** "fp": FP-Diffusion's loss form; "toy": the toy preset's DSM with the same score-FPE term. */
  loss: "fp" | "toy";
  images?: "uniform" | "smooth";
};
const CASES: Record<string, Case> = {
  "cifar-ve-nf8/uniform": { net: "cifar-ve-nf8", loss: "fp", images: "uniform" },
  "cifar-ve-nf8/smooth": { net: "cifar-ve-nf8", loss: "fp", images: "smooth" },
  "cifar-vp-nf8/uniform": { net: "cifar-vp-nf8", loss: "fp", images: "uniform" },
  "cifar-ve-nf128/uniform": { net: "cifar-ve-nf128", loss: "fp", images: "uniform" },
  "checkerboard-random/fp": { net: "checkerboard-random", loss: "fp" },
  "checkerboard-random/toy": { net: "checkerboard-random", loss: "toy" },
  "checkerboard-base/fp": { net: "checkerboard-base", loss: "fp" },
  "checkerboard-base/toy": { net: "checkerboard-base", loss: "toy" },
  "mog1d-random/fp": { net: "mog1d-random", loss: "fp" },
  "mog1d-random/toy": { net: "mog1d-random", loss: "toy" },
  "mog1d-base/fp": { net: "mog1d-base", loss: "fp" },
  "mog1d-base/toy": { net: "mog1d-base", loss: "toy" },
};

/**
 * A deterministic uniform [lo, hi) image batch (mulberry32), built with the Tensor class of the
 * session's codec: under `fpd ablate` this script runs from source while the session comes from
 * dist/, so a tensor made with src's class would not be recognised on the wire.
 */
function uniformImages(like: Tensor, n: number, seed: number, lo: number, hi: number): Tensor {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const v = new Float32Array(n * 3 * 32 * 32);
  for (let i = 0; i < v.length; i++) v[i] = lo + (hi - lo) * next();
  const Ctor = like.constructor as new (dtype: "float32", shape: number[], data: Float32Array) => Tensor;
  return new Ctor("float32", [n, 3, 32, 32], v);
}

/** t grid of the quadrature of E_t over t ~ U[eps, 1] (dense where the residual grows). */
const T_GRID = [1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85, 1];
const T_FULL = [1e-5, 1e-3, 1e-2, 0.1, 0.35, 0.7, 1];

/** ∫ f dt / (t_last − t_first) by the trapezoid rule on the grid: E_t f for t ~ U[t_first, t_last]. */
function uniformMean(t: number[], f: number[]): number {
  let acc = 0;
  for (let i = 1; i < t.length; i++) acc += 0.5 * (f[i]! + f[i - 1]!) * (t[i]! - t[i - 1]!);
  return acc / (t.at(-1)! - t[0]!);
}

export default defineAblation({
  name: "score-FPE scale across dimensions",
  description:
    "FP-Diffusion's loss terms against t and their expectations over t ~ U[1e-5, 1] (trapezoid rule on a t grid, so rare " +
    "small-t draws do not decide the answer): DSM (`fp`: likelihood-weighted, ½·sum for VE and mean for VP as the fp/ " +
    "presets; `toy`: the toy presets' conventional per-dimension mean), the vector term E[g²‖r‖^m]/D^m for m = 2 and 1, " +
    "and the scalar term per √batch (‖φ̃‖₂ over a batch of B is √B times this). `shareVector` / `shareScalar`: α·vector / " +
    "total and β·scalar / total with FP-Diffusion's α = 0.15, β = 0.01 at its batch of 48. `alphaAt…` / `betaAt…`: the α and " +
    "β that would give this network the shares of the CIFAR-10 VE fixture row (m = 2). CIFAR-10 networks have random " +
    "weights (the nf = 8 fixtures; a fresh full-width NCSN++) on random images; toy networks are random or the α study's " +
    "DSM base (seed 0). See docs/score-fpe-scale.md.",
  params: {
    n: 8,
    nFull: 2,
    // the toy network and base of ablations/fpe_alpha.ts; `bases`: its output directory, to reuse its bases
    baseSteps: 1500,
    batch: 256,
    width: 64,
    hidden: "128,128",
    bases: "",
    // a trained VE CIFAR-10 checkpoint in the original format (Score SDE's checkpoint_26.pth) and the
    // CIFAR-10 python directory: adds the row that anchors the calibration on a trained network
    checkpoint: "",
    preset: "fp/ve_cifar10",
    data: "",
    nCheckpoint: 16,
    toyPoints: 2048,
    seed: 7,
    paperBatch: 48,
  },
  grid: (p) => ({ case: [...Object.keys(CASES), ...(p.checkpoint ? ["cifar-checkpoint"] : [])] }),
  async run(point, ctx) {
    const c: Case = point.case === "cifar-checkpoint" ? { net: "cifar-checkpoint", loss: "fp", images: ctx.params.data ? "smooth" : "uniform" } : CASES[point.case]!;
    const p = ctx.params;
    const protocol: Protocol = { baseSteps: p.baseSteps, steps: 0, batch: p.batch, width: p.width, hidden: p.hidden, emaRate: 0.999 };
    let handle: string;
    let x: Tensor | undefined;
    let n = p.toyPoints;
    let times = T_GRID;
    let dsm: Record<string, unknown>;
    let fpeOpts: Record<string, unknown> = { div: "exact" };
    let sdeSpec: Sde;
    let d: number;
    if (c.net.startsWith("cifar")) {
      const trained = c.net === "cifar-checkpoint";
      const vp = trained ? !p.preset.includes("ve_") : c.net.includes("vp");
      const full = trained || c.net.includes("nf128");
      const preset = trained ? p.preset : vp ? "fp/vp_cifar10" : "fp/ve_cifar10";
      let set = full ? [] : ["model.nf=8"];
      if (trained && p.data) {
        set = [...set, `data.path=${resolve(p.data)}`];
      } else if (c.images === "smooth") {
        const dir = join(ctx.outDir, "synthetic-cifar10");
        await ctx.session.request("data.synthetic", { path: dir, imagesPerFile: 64, seed: 0 });
        set = [...set, `data.path=${resolve(dir)}`];
      }
      const { experiment } = await loadExperiment(preset, { set });
      const checkpoint = trained ? resolve(p.checkpoint) : full ? undefined : join(FIXTURES, vp ? "vp_ddpmpp_small_seed0.pth" : "ve_ncsnpp_small_seed0.pth");
      handle = (await ctx.session.load(experiment, { ...(checkpoint ? { checkpoint } : {}), handle: c.net })).handle;
      n = trained ? p.nCheckpoint : full ? p.nFull : p.n;
      times = full && !trained ? T_FULL : T_GRID;
      if (c.images === "uniform") {
        const like = (await ctx.session.request("toy.data", { dataset: "gaussian", n: 1, seed: 0 })).x;
        x = uniformImages(like, n, p.seed, vp ? -1 : 0, 1);
      }
      dsm = experiment.loss.terms[0] as Record<string, unknown>;
      const fpe = experiment.loss.terms[1] as { dt: unknown; probe: string };
      fpeOpts = { div: "hutchinson", probe: fpe.probe, dt: fpe.dt };
      sdeSpec = experiment.sde;
      d = 3072;
    } else {
      const data = (c.net.startsWith("mog1d") ? "mog1d" : "checkerboard") as ToyData;
      const exp = await toyExperiment({ data, method: "dsm", steps: p.baseSteps, batchSize: p.batch }, [...netOverrides(protocol), "training.seed=0"]);
      if (c.net.endsWith("base")) {
        const ckpt = await ensureBase(ctx.session, p.bases ? resolve(p.bases) : ctx.outDir, data, 0, protocol, ctx.signal);
        handle = (await ctx.session.load(exp, { checkpoint: ckpt, handle: c.net })).handle;
      } else {
        handle = (await ctx.session.load(exp, { handle: c.net })).handle;
      }
      dsm = c.loss === "fp"
        ? { kind: "dsm", weighting: "likelihood", reduce: "sum", importanceSampling: false, eps: 1e-5 }
        : { kind: "dsm", weighting: "conventional", reduce: "mean", importanceSampling: false, eps: 1e-5 };
      sdeSpec = exp.sde;
      d = data === "mog1d" ? 1 : 2;
    }
    const points = x ? { x } : { n, split: "test" as const };
    const fpe = { kind: "scoreFpe" as const, mode: "both" as const, alpha: 0.15, beta: 0.01, m: 2, weighting: "ll" as const, points: "pert" as const, ...fpeOpts };
    const dsmT: number[] = [];
    const vec2T: number[] = [];
    const scaT: number[] = [];
    let seconds = 0;
    for (const t of times) {
      // every point at the same t: one batch, so the scalar term's ‖φ̃‖₂ runs over all n points
      const r = await ctx.session.evaluate(handle, { kind: "loss", loss: { terms: [dsm, fpe] } as never, t, seed: p.seed, batchSize: n, ...points }, { signal: ctx.signal });
      dsmT.push(r.terms.dsm!);
      vec2T.push(r.terms["score_fpe.vector"]!);
      scaT.push(r.terms["score_fpe.scalar"]! / Math.sqrt(r.n));
      seconds += r.seconds;
    }
    // m = 1 from the residual's mean norm: g²·E‖r‖ / D (the same weighting, one pass for every t)
    const res = (await ctx.session.evaluate(handle, { kind: "fpeResidual", t: times, seed: p.seed, ...(fpeOpts as object), ...points } as never, { signal: ctx.signal })) as { residual: number[]; seconds: number };
    seconds += res.seconds;
    const vec1T = times.map((t, i) => (schedule.g2(sdeSpec, t) * res.residual[i]!) / d);
    const eDsm = uniformMean(times, dsmT);
    const eV2 = uniformMean(times, vec2T);
    const eV1 = uniformMean(times, vec1T);
    const eS = uniformMean(times, scaT) * Math.sqrt(p.paperBatch);
    const total = eDsm + 0.15 * eV2 + 0.01 * eS;
    ctx.log(`${point.case}: t ${times.join(" ")}\n  dsm ${dsmT.map((v) => v.toPrecision(3)).join(" ")}\n  vector ${vec2T.map((v) => v.toPrecision(3)).join(" ")}\n  scalar/√B ${scaT.map((v) => v.toPrecision(3)).join(" ")}`);
    return {
      D: d,
      points: n,
      dsm: eDsm,
      vectorM2: eV2,
      vectorM1: eV1,
      scalarPerSqrtB: eS / Math.sqrt(p.paperBatch),
      shareVector: (0.15 * eV2) / total,
      shareScalar: (0.01 * eS) / total,
      curves: JSON.stringify({ t: times, dsm: dsmT, vectorM2: vec2T, vectorM1: vec1T, scalarPerSqrtB: scaT }),
      seconds,
    };
  },
  columns: ["case", "D", "points", "dsm", "vectorM2", "vectorM1", "scalarPerSqrtB", "shareVector", "shareScalar", "seconds"],
  async plot(rows, { session, path }) {
    // FP-Diffusion's loss form only: the `toy` rows have the same vector term over a smaller DSM
    const series = rows.filter((r) => !String(r.case).endsWith("/toy")).map((r) => {
      const c = JSON.parse(String(r.curves)) as { t: number[]; dsm: number[]; vectorM2: number[] };
      return { label: String(r.case), x: c.t, y: c.t.map((_, i) => c.vectorM2[i]! / c.dsm[i]!) };
    });
    await session.request("plot.lines", {
      path,
      series,
      title: "score-FPE vector term (g², m = 2, /D²) over likelihood-weighted DSM, at each t",
      xlabel: "t",
      ylabel: "vector(t) / DSM(t)",
      logx: true,
      logy: true,
    });
  },
});

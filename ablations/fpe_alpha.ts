/**
 * The score-FPE weight α in the fine-tune protocol, over many decades (docs/score-fpe-scale.md).
 *
 * Per data set: a first-order DSM base is trained once; copies of it continue for the
 * same further updates with DSM + the score-FPE vector term (FP-Diffusion's g² weighting, ‖r‖^m,
 * exact divergence, autodiff ∂t) at each α and m — and with DSM alone, the control. One more copy
 * uses FP-Diffusion's CIFAR-10 regime carried to the toy by the dimension-free weights ('both',
 * g², m = 2, `calibrate` with the shares measured on CIFAR-10 by ablations/fpe_scale.ts), and one
 * its scalar term alone at its share. Every copy
 * is scored on the same test points with the same ODE (dopri5, exact divergence, rtol = atol =
 * 1e-5, EMA weights): its NLL's paired difference to the control, and the absolute score-FPE
 * residual E‖∂t s − ∇x φ̃‖ at t ∈ TIMES. Seeds vary the continuations (their batches and draws),
 * each method against the control of the same seed.
 *
 *   fpd ablate ablations/fpe_alpha.ts --out ablations/results/fpe_alpha     # ~1.5 h on 2 shared CPU cores
 *   fpd ablate ablations/fpe_alpha.ts --param seeds=5 --param steps=2000 --param batch=5000 --device cuda
 */
import { join } from "node:path";
import { defineAblation, type Session } from "../src/api/index.js";
import {
  cached,
  copyExperiment,
  ensureBase,
  finetuneCopy,
  mean,
  meanSe,
  paired,
  perPointNll,
  testPoints,
  type Protocol,
  type ToyData,
} from "./lib/finetune.js";

/** Where the residual is measured (VE: σ(t) = 0.01·5000^t, so t = 1e-3 is σ ≈ 0.0101). */
const TIMES = [1e-3, 1e-2, 0.1, 0.5];
const TEST_SEED = 4242;

interface Setting {
  label: string;
  alpha: number | null;
  m: number;
  set: string[];
}

function settings(alphas: number[], ms: number[], vectorShare: number, scalarShare: number): Record<string, Setting | null> {
  const out: Record<string, Setting | null> = { control: null };
  for (const m of ms) {
    for (const a of alphas) {
      out[`vector m=${m} α=${a}`] = {
        label: `vector m=${m}`,
        alpha: a,
        m,
        set: ["loss.terms[1].mode=vector", "loss.terms[1].weighting=ll", `loss.terms[1].m=${m}`, `loss.terms[1].alpha=${a}`, "loss.terms[1].calibrate=null"],
      };
    }
  }
  // the scalar term alone: at its CIFAR-10 share (which of the two terms the regime's effect comes
  // from), and 10× / 100× stronger
  for (const [key, share] of [["scalar only, calibrated", scalarShare], ["scalar only, 10× share", 10 * scalarShare], ["scalar only, 100× share", 100 * scalarShare]] as const) {
    out[key] = {
      label: "scalar, calibrated",
      alpha: null,
      m: 2,
      set: ["loss.terms[1].mode=scalar", "loss.terms[1].weighting=ll", `loss.terms[1].calibrate=${JSON.stringify({ scalarShare: share, batches: 4 })}`],
    };
  }
  // the recommendation for the toy presets: both terms at the shares that helped on their own
  out["both, shares 1e-2 / 2e-2"] = {
    label: "both, calibrated",
    alpha: null,
    m: 2,
    set: ["loss.terms[1].mode=both", "loss.terms[1].weighting=ll", "loss.terms[1].m=2", `loss.terms[1].calibrate=${JSON.stringify({ vectorShare: 0.01, scalarShare: 0.02, batches: 4 })}`],
  };
  out["FP-Diffusion regime"] = {
    label: "both, calibrated",
    alpha: null,
    m: 2,
    set: [
      "loss.terms[1].mode=both",
      "loss.terms[1].weighting=ll",
      "loss.terms[1].m=2",
      `loss.terms[1].calibrate=${JSON.stringify({ vectorShare, scalarShare, batches: 4 })}`,
    ],
  };
  return out;
}

/** The total share (vector + scalar) a calibrated setting asks for. */
function sharesOf(s: Setting): number {
  const c = s.set.find((v) => v.startsWith("loss.terms[1].calibrate="))!;
  const cal = JSON.parse(c.slice(c.indexOf("=") + 1)) as { vectorShare?: number; scalarShare?: number };
  return (cal.vectorShare ?? 0) + (cal.scalarShare ?? 0);
}

const nums = (s: string) => s.split(",").map((v) => Number(v.trim())).filter((v) => Number.isFinite(v));

interface Scored {
  nll: number[];
  residual: number[];
  lhs: number[];
  rhs: number[];
  seconds: number;
  alpha: number;
  beta: number;
  share0: number;
}

/** Share of the score-FPE term in the loss of `set` at the base (before any fine-tuning). */
async function shareAtBase(session: Session, base: string, data: ToyData, seed: number, p: Protocol, set: string[], handle: string): Promise<number> {
  const exp = await copyExperiment(data, seed, "dsm_fpe", p, set);
  await session.load(exp, { checkpoint: base, handle });
  const r = await session.evaluate(handle, { kind: "loss", weights: "model", n: 4096, seed: 0, batchSize: 1024 });
  return (r.weighted.score_fpe ?? 0) / r.loss;
}

export default defineAblation({
  name: "score-FPE weight α in the fine-tune protocol",
  description:
    "One DSM base per data set is continued for the same further updates with DSM + the score-FPE vector term " +
    "(g² weighting, ‖r‖^m / D^m, exact divergence) at each α and m, with DSM alone (the control), and with FP-Diffusion's " +
    "CIFAR-10 regime ('both', g², m = 2) carried over by its measured shares of the loss (calibrate), with the scalar term " +
    "alone at 1×, 10×, 100× its share, and with both terms at shares 1e-2 / 2e-2. Seeds vary the " +
    "continuations (batches, draws). `dNll`: mean over seeds of the paired NLL difference to the control on the same test points (nats; < 0 is better); `seSeeds`: its " +
    "standard error across seeds; `sePaired`: the within-seed paired standard error (test-point noise only). `share0`: " +
    "the score-FPE term's share of the loss at the base. `res@t`: absolute residual E‖∂t s − ∇x φ̃‖ (mean over seeds); " +
    "`resRatio@0.001`: that at t = 1e-3 over the control's. NLL by the ODE (dopri5, exact divergence, rtol = atol = " +
    "1e-5, EMA weights).",
  params: {
    datasets: "checkerboard,mog1d",
    seeds: 3,
    alphas: "1e-9,1e-8,1e-7,1e-6,1e-5,1e-4,1e-3,1e-1",
    ms: "2,1",
    baseSteps: 1500,
    steps: 150,
    batch: 256,
    width: 64,
    hidden: "128,128",
    emaRate: 0.99,
    nllPoints: 400,
    residualPoints: 300,
    // FP-Diffusion's shares on CIFAR-10 (VE NCSN++ nf = 8 fixture, α 0.15, β 0.01, batch 48), measured by
    // ablations/fpe_scale.ts: vector 1.1e-6 (white-noise images) – 3.3e-6 (smooth), scalar 1.7e-3 – 1.9e-3
    vectorShare: 2e-6,
    scalarShare: 2e-3,
  },
  grid: (p) => ({
    data: p.datasets.split(",").map((s) => s.trim()) as ToyData[],
    setting: Object.keys(settings(nums(p.alphas), nums(p.ms), p.vectorShare, p.scalarShare)),
  }),
  async run(point, ctx) {
    const p = ctx.params;
    const data = point.data as ToyData;
    const setting = settings(nums(p.alphas), nums(p.ms), p.vectorShare, p.scalarShare)[point.setting];
    if (setting === undefined) throw new Error(`unknown setting ${point.setting}`);
    const protocol: Protocol = { baseSteps: p.baseSteps, steps: p.steps, batch: p.batch, width: p.width, hidden: p.hidden, emaRate: p.emaRate };
    const signal = ctx.signal;
    const root = ctx.outDir;
    const x = await testPoints(ctx.session, data, p.nllPoints, TEST_SEED);

    const score = async (key: string, base: string, seed: number, s: Setting | null): Promise<Scored> =>
      cached(join(root, "scores", `${data}-seed${seed}`, `${key.replace(/[^A-Za-z0-9.=-]+/g, "_")}.json`), async () => {
        const method = s ? "dsm_fpe" : "dsm";
        const exp = await copyExperiment(data, seed, method, protocol, s?.set ?? []);
        const handle = `${data}-${seed}-${key}`;
        const dir = join(root, "copies", `${data}-seed${seed}`, key.replace(/[^A-Za-z0-9.=-]+/g, "_"));
        const share0 = s && s.alpha !== null ? await shareAtBase(ctx.session, base, data, seed, protocol, s.set, `${handle}-base`) : 0;
        const ft = await finetuneCopy(ctx.session, base, exp, dir, handle, signal);
        const nll = await perPointNll(ctx.session, handle, x, signal);
        const res = await ctx.session.evaluate(handle, { kind: "fpeResidual", weights: "ema", t: TIMES, n: p.residualPoints, seed: 5, div: "exact" }, { signal });
        const cal = ft.calibration[0];
        const calShare = s && s.alpha === null ? sharesOf(s) : share0;
        return {
          nll: nll.nll,
          residual: res.residual,
          lhs: res.lhs,
          rhs: res.rhs,
          seconds: ft.seconds,
          alpha: cal ? cal.alpha : s?.alpha ?? 0,
          beta: cal ? cal.beta : 0,
          share0: calShare,
        };
      });

    const perSeed: { d: { mean: number; se: number }; v: Scored; c: Scored }[] = [];
    for (let seed = 0; seed < p.seeds; seed++) {
      const base = await ensureBase(ctx.session, root, data, 0, protocol, signal);
      const c = await score("control", base, seed, null);
      const v = setting ? await score(point.setting, base, seed, setting) : c;
      perSeed.push({ d: paired(v.nll, c.nll), v, c });
      ctx.log(`${data} seed ${seed} ${point.setting}: ΔNLL ${perSeed.at(-1)!.d.mean.toFixed(4)} ± ${perSeed.at(-1)!.d.se.toFixed(4)}`);
    }
    const ds = perSeed.map((s) => s.d.mean);
    const across = meanSe(ds);
    const res = TIMES.map((_, i) => mean(perSeed.map((s) => s.v.residual[i]!)));
    return {
      // the scalar-only setting has no vector term: its α is 0 (and it is left out of the α plots)
      alpha: setting && !setting.label.startsWith("scalar") ? mean(perSeed.map((s) => s.v.alpha)) : 0,
      beta: setting && setting.alpha === null ? mean(perSeed.map((s) => s.v.beta)) : 0,
      m: setting ? setting.m : 0,
      share0: setting ? mean(perSeed.map((s) => s.v.share0)) : 0,
      nll: mean(perSeed.map((s) => mean(s.v.nll))),
      dNll: across.mean,
      seSeeds: across.se,
      sePaired: Math.sqrt(perSeed.reduce((a, s) => a + s.d.se ** 2, 0)) / perSeed.length,
      dNllBySeed: ds.map((d) => d.toFixed(4)).join(" "),
      ...Object.fromEntries(TIMES.map((t, i) => [`res@${t}`, res[i]!])),
      "resRatio@0.001": mean(perSeed.map((s) => s.v.residual[0]! / s.c.residual[0]!)),
      "lhs@0.001": mean(perSeed.map((s) => s.v.lhs[0]!)),
      "rhs@0.001": mean(perSeed.map((s) => s.v.rhs[0]!)),
      fineTuneSeconds: mean(perSeed.map((s) => s.v.seconds)),
    };
  },
  async plot(rows, { session, path }) {
    type R = (typeof rows)[number];
    const groups = new Map<string, R[]>();
    for (const r of rows) {
      if (r.setting === "control" || !(r.alpha > 0)) continue;
      const key = `${r.data}, ${r.setting.startsWith("vector") ? `vector m=${r.m}` : r.setting.startsWith("scalar") ? "scalar only, calibrated share" : r.setting}`;
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    const series = [...groups.entries()].map(([label, rs]) => {
      const sorted = [...rs].sort((a, b) => a.alpha - b.alpha);
      return { label, x: sorted.map((r) => r.alpha), y: sorted.map((r) => r.dNll), yerr: sorted.map((r) => r.seSeeds) };
    });
    await session.request("plot.lines", {
      path,
      series,
      title: "fine-tuned with DSM + score FPE: NLL − control's NLL (same test points; ± s.e. across seeds)",
      xlabel: "α (the score-FPE vector weight)",
      ylabel: "paired ΔNLL to DSM-only (nats)",
      logx: true,
      hline: { y: 0, label: "control: DSM only, same further updates" },
    });
    // the small effects, against the dimension-free weight: the term's share of the loss at the start
    const byShare = new Map<string, R[]>();
    for (const r of rows) {
      if (r.setting === "control" || !(r.share0 > 0) || r.share0 > 0.05) continue;
      const kind = r.setting.startsWith("vector") ? `vector m=${r.m}` : r.setting.startsWith("scalar") ? "scalar only" : r.setting;
      const key = `${r.data}, ${kind}`;
      byShare.set(key, [...(byShare.get(key) ?? []), r]);
    }
    await session.request("plot.lines", {
      path: path.replace(/results\.png$/, "small-shares.png"),
      series: [...byShare.entries()].map(([label, rs]) => {
        const sorted = [...rs].sort((a, b) => a.share0 - b.share0);
        return { label, x: sorted.map((r) => r.share0), y: sorted.map((r) => r.dNll), yerr: sorted.map((r) => r.seSeeds) };
      }),
      title: "ΔNLL to DSM-only at small weights (share of the loss at the start ≤ 5 %)",
      xlabel: "score-FPE share of the loss at the start (α·vector + β·scalar) / total",
      ylabel: "paired ΔNLL to DSM-only (nats)",
      logx: true,
      hline: { y: 0, label: "control" },
    });
    const residual = [...groups.entries()].map(([label, rs]) => {
      const sorted = [...rs].sort((a, b) => a.alpha - b.alpha);
      return { label, x: sorted.map((r) => r.alpha), y: sorted.map((r) => Number((r as Record<string, unknown>)["res@0.001"])) };
    });
    const xs = rows.filter((r) => r.alpha > 0).map((r) => r.alpha);
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    for (const r of rows.filter((r) => r.setting === "control")) {
      residual.push({ label: `${r.data}, control`, x: [lo, hi], y: [Number((r as Record<string, unknown>)["res@0.001"]), Number((r as Record<string, unknown>)["res@0.001"])] });
    }
    await session.request("plot.lines", {
      path: path.replace(/results\.png$/, "residual.png"),
      series: residual,
      title: "absolute score-FPE residual E‖∂t s − ∇φ̃‖ at t = 1e-3 after fine-tuning",
      xlabel: "α (the score-FPE vector weight)",
      ylabel: "E‖∂t s − ∇φ̃‖ at t = 1e-3",
      logx: true,
      logy: true,
    });
  },
});

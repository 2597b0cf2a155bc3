/**
 * Score-FPE weight: α ∈ {0, 0.05, 0.15, 0.5} × m ∈ {1, 2} on the toy checkerboard (VE, DSM +
 * score FPE in the toy presets' former setting: vector residual, g(t) weighting, α absolute — the
 * presets now state the weight as a share of the loss), each trained FROM SCRATCH for the same budget, scored by
 * the ScoreODE NLL against the entropy floor and by the ABSOLUTE score-FPE residual it leaves,
 * E‖∂t s − ∇x φ̃‖, beside its two sides ‖∂t s‖ and ‖∇x φ̃‖. (The ratio of the residual to ‖∇x φ̃‖
 * is not reported: it explodes when the regulariser drives ∇x φ̃ → 0, which read as "the
 * regulariser makes the residual worse" when it had made it smaller.) The weights over decades,
 * in the fine-tune protocol, are ablations/fpe_alpha.ts; why α = 0.15 is so strong at D = 2 is
 * docs/score-fpe-scale.md.
 *
 *   fpd ablate ablations/fpe_weight.ts --param steps=300     # about 20 min on 2 idle CPU cores
 *   fpd ablate ablations/fpe_weight.ts --param steps=300 --param batch=256 --param width=64 --param hidden=128,128   # the recorded run
 *   fpd ablate ablations/fpe_weight.ts --param steps=5000 --param batch=5000 --device cuda
 */
import { defineAblation, toyExperiment, trainToy } from "../src/api/index.js";

const TIMES = [0.01, 0.1, 0.5];

export default defineAblation({
  name: "score-FPE weight × norm power",
  description:
    "DSM + score-FPE regulariser on the 2-D checkerboard (VE), trained from scratch, in the toy presets' former setting " +
    "(vector residual only, g(t) weighting, α absolute; the presets now use calibrated shares): α weighs " +
    "the vector residual g(t)·‖r‖^m / D^m (α = 0 is plain DSM). NLL in nats by the probability-flow ODE on fresh points; " +
    "the floor is log 32 = 3.466. `res@t`: the absolute score-FPE residual E‖∂t s − ∇x φ̃‖ at t (500 perturbed data " +
    "points, EMA weights); `dts@t` and `gradPhi@t`: E‖∂t s‖ and E‖∇x φ̃‖ there.",
  // width / hidden: the MLP's encoder output width and hidden sizes ("" keeps the preset's 128 / 512,512)
  params: { data: "checkerboard", steps: 600, batch: 1000, nllPoints: 1000, width: 0, hidden: "" },
  grid: { alpha: [0, 0.05, 0.15, 0.5], m: [1, 2] },
  async run(point, ctx) {
    const experiment = await toyExperiment(
      { data: ctx.params.data, method: "dsm_fpe", steps: ctx.params.steps, batchSize: ctx.params.batch },
      [
        // the toy presets' former setting: the vector residual alone, g(t) weighting, α as given
        "loss.terms[1].mode=vector",
        "loss.terms[1].weighting=convention",
        "loss.terms[1].calibrate=null",
        `loss.terms[1].alpha=${point.alpha}`,
        `loss.terms[1].m=${point.m}`,
        ...(ctx.params.width > 0 ? [`model.width=${ctx.params.width}`, `model.timeHidden=[${ctx.params.width},${ctx.params.width}]`, `model.xHidden=[${ctx.params.width},${ctx.params.width}]`] : []),
        ...(ctx.params.hidden ? [`model.hidden=[${ctx.params.hidden}]`] : []),
      ],
    );
    const scored = await trainToy(ctx.session, experiment, { runDir: ctx.pointDir, nllPoints: ctx.params.nllPoints, signal: ctx.signal });
    const fpe = await ctx.session.evaluate(scored.handle, { kind: "fpeResidual", t: TIMES, n: 500, seed: 4 }, { signal: ctx.signal });
    return {
      nll: scored.nll.nll,
      stderr: scored.nll.stderr,
      gap: scored.nll.gap ?? NaN,
      ...Object.fromEntries(TIMES.map((t, i) => [`res@${t}`, fpe.residual[i]!])),
      ...Object.fromEntries(TIMES.map((t, i) => [`dts@${t}`, fpe.lhs[i]!])),
      ...Object.fromEntries(TIMES.map((t, i) => [`gradPhi@${t}`, fpe.rhs[i]!])),
      trainSeconds: scored.trainSeconds,
    };
  },
  plot: { x: "alpha", y: "nll", yerr: "stderr", series: ["m"], title: "ScoreODE NLL vs score-FPE weight", hline: { y: Math.log(32), label: "entropy floor log 32" } },
});

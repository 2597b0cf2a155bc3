/**
 * FP-Diffusion (Lai et al., ICML 2023) fine-tuning presets: the Score SDE CIFAR-10 continuous
 * configs under sony/fp-diffusion's `default_cifar10_configs.py` — batch 48, likelihood weighting,
 * and the score-FPE regulariser (`scalar_fp = 'both'`, `fp_wgt_type = 'll'`, α = 0.15, β = 0.01,
 * m = 2, evaluated at the perturbed points, Gaussian Hutchinson divergence). Fine-tune from the
 * Score SDE checkpoint of the same architecture.
 *
 * Two variants of each:
 * - `fp/<sde>_cifar10[_deep]`: fpdiff's numerics — ∂t s exactly by forward-mode autodiff, std(t)
 *   by the stable expm1 form.
 * - `fp/<sde>_cifar10[_deep]_reference`: the reference's numerics — ∂t s by its three-point
 *   finite difference (hs = 1e-3, hd = 5e-4; one-sided nodes t + hd, t + 2hd where t − hs would
 *   leave [eps, T], where the reference itself returns NaN), std(t) as the reference computes it
 *   in float32 (`stdFormula: "original"`, VP / subVP). The stencil is 29–33 % off the exact ∂t s
 *   on average on the fixture networks (README, deviations).
 * The reference could not build subVP at all; the subVP presets use the score FPE of docs/maths.md §5.1
 * with the same hyper-parameters.
 */
import { data, experiment, loss, model, sampling, sde, training, type Experiment } from "../src/dsl/index.js";
import { FP_DIFFUSION_FPE } from "./terms.js";

type Numerics = "fpdiff" | "reference";

const fpe = (numerics: Numerics) =>
  loss.scoreFpe({
    ...FP_DIFFUSION_FPE,
    dt: numerics === "fpdiff" ? "autodiff" : { finiteDifference: { hs: 1e-3, hd: 5e-4 } },
    div: "hutchinson",
    probe: "gaussian",
  });

const suffix = (deep: boolean, numerics: Numerics) => `${deep ? "_deep" : ""}${numerics === "reference" ? "_reference" : ""}`;
const how = (numerics: Numerics) =>
  numerics === "reference" ? "; the reference's finite-difference ∂t s and float32 std" : "; exact ∂t s by forward mode";

function ve(deep: boolean, numerics: Numerics): Experiment {
  return experiment({
    name: `fp/ve_cifar10${suffix(deep, numerics)}`,
    description: `FP-Diffusion fine-tuning: VE, NCSN++ cont.${deep ? " deep" : ""}, CIFAR-10, likelihood-weighted DSM + score FPE (α 0.15, β 0.01)${how(numerics)}`,
    sde: sde.ve(),
    model: model.ncsnpp({ numResBlocks: deep ? 8 : 4 }),
    data: data.cifar10(),
    loss: loss.dsm({ weighting: "likelihood", reduce: "sum" }).plus(fpe(numerics)),
    training: training({ batchSize: 48, nIters: deep ? 950001 : 1300001 }),
    sampling: sampling.pc({ predictor: "reverse_diffusion", corrector: "langevin" }),
  });
}

function vpLike(kind: "vp" | "subvp", deep: boolean, numerics: Numerics): Experiment {
  const stdFormula = numerics === "reference" ? "original" : "stable";
  return experiment({
    name: `fp/${kind}_cifar10${suffix(deep, numerics)}`,
    description: `FP-Diffusion fine-tuning: ${kind === "vp" ? "VP" : "subVP"}, DDPM++ cont.${deep ? " deep" : ""}, CIFAR-10, likelihood-weighted DSM + score FPE (α 0.15, β 0.01)${how(numerics)}`,
    sde: kind === "vp" ? sde.vp({ stdFormula }) : sde.subvp({ stdFormula }),
    model: model.ddpmpp({ numResBlocks: deep ? 8 : 4 }),
    data: data.cifar10({ centered: true }),
    loss: loss.dsm({ weighting: "likelihood", reduce: "mean" }).plus(fpe(numerics)),
    training: training({ batchSize: 48, nIters: deep ? 950001 : 1300001 }),
    sampling: sampling.pc({ predictor: "euler_maruyama", corrector: "none" }),
  });
}

export const fpPresets: Experiment[] = (["fpdiff", "reference"] as const).flatMap((n) => [
  ve(false, n),
  ve(true, n),
  vpLike("vp", false, n),
  vpLike("vp", true, n),
  vpLike("subvp", false, n),
  vpLike("subvp", true, n),
]);

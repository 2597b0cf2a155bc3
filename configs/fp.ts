/**
 * FP-Diffusion (Lai et al., ICML 2023) fine-tuning presets: the Score SDE CIFAR-10 continuous
 * configs under sony/fp-diffusion's `default_cifar10_configs.py` — batch 48, likelihood weighting,
 * and the score-FPE regulariser (`scalar_fp = 'both'`, `fp_wgt_type = 'll'`, α = 0.15, β = 0.01,
 * m = 2, evaluated at the perturbed points, Gaussian Hutchinson divergence). Fine-tune from the
 * Score SDE checkpoint of the same architecture.
 *
 * ∂t s: the reference's 3-point finite difference (hs = 1e-3, hd = 5e-4) for VE. For VP / subVP it
 * would evaluate std(t − 1e-3) at t < 1e-3, which is NaN (a defect of the reference, docs/maths.md §5.4), so
 * those presets take ∂t s by forward-mode autodiff. The reference could not build subVP at all; the
 * subVP presets use the score FPE of docs/maths.md §5.1 with the same hyper-parameters.
 */
import { data, experiment, loss, model, sampling, sde, training, type Experiment } from "../src/dsl/index.js";

const fpe = (dt: "autodiff" | "finiteDifference") =>
  loss.scoreFpe({
    mode: "both",
    alpha: 0.15,
    beta: 0.01,
    m: 2,
    weighting: "ll",
    points: "pert",
    dt: dt === "autodiff" ? "autodiff" : { finiteDifference: { hs: 1e-3, hd: 5e-4 } },
    div: "hutchinson",
    probe: "gaussian",
  });

function ve(deep: boolean): Experiment {
  return experiment({
    name: `fp/ve_cifar10${deep ? "_deep" : ""}`,
    description: `FP-Diffusion fine-tuning: VE, NCSN++ cont.${deep ? " deep" : ""}, CIFAR-10, likelihood-weighted DSM + score FPE (α 0.15, β 0.01)`,
    sde: sde.ve(),
    model: model.ncsnpp({ numResBlocks: deep ? 8 : 4 }),
    data: data.cifar10(),
    loss: loss.dsm({ weighting: "likelihood", reduce: "sum" }).plus(fpe("finiteDifference")),
    training: training({ batchSize: 48, nIters: deep ? 950001 : 1300001 }),
    sampling: sampling.pc({ predictor: "reverse_diffusion", corrector: "langevin" }),
  });
}

function vpLike(kind: "vp" | "subvp", deep: boolean): Experiment {
  return experiment({
    name: `fp/${kind}_cifar10${deep ? "_deep" : ""}`,
    description: `FP-Diffusion fine-tuning: ${kind === "vp" ? "VP" : "subVP"}, DDPM++ cont.${deep ? " deep" : ""}, CIFAR-10, likelihood-weighted DSM + score FPE (α 0.15, β 0.01)`,
    sde: kind === "vp" ? sde.vp() : sde.subvp(),
    model: model.ddpmpp({ numResBlocks: deep ? 8 : 4 }),
    data: data.cifar10({ centered: true }),
    loss: loss.dsm({ weighting: "likelihood", reduce: "mean" }).plus(fpe("autodiff")),
    training: training({ batchSize: 48, nIters: deep ? 950001 : 1300001 }),
    sampling: sampling.pc({ predictor: "euler_maruyama", corrector: "none" }),
  });
}

export const fpPresets: Experiment[] = [
  ve(false),
  ve(true),
  vpLike("vp", false),
  vpLike("vp", true),
  vpLike("subvp", false),
  vpLike("subvp", true),
];

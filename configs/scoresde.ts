/**
 * Score SDE (Song et al., 2021) CIFAR-10 continuous-time presets, field for field the originals
 * `configs/{ve,vp,subvp}/cifar10_*_continuous.py` of yang-song/score_sde_pytorch. Their shared
 * defaults (`default_cifar10_configs.py`) are the DSL's defaults, so only the differences are
 * written here.
 */
import { data, experiment, loss, model, sampling, sde, training, type Experiment } from "../src/dsl/index.js";

/** VE SDE + NCSN++ cont.: conventional DSM summed over dimensions, PC reverse diffusion + Langevin. */
function ve(deep: boolean): Experiment {
  return experiment({
    name: `ve/cifar10_ncsnpp${deep ? "_deep" : ""}_continuous`,
    description: `Score SDE: VE SDE, NCSN++ cont.${deep ? " deep (8 res. blocks)" : ""}, CIFAR-10, conventional DSM`,
    sde: sde.ve(),
    model: model.ncsnpp({ numResBlocks: deep ? 8 : 4 }),
    data: data.cifar10(),
    loss: loss.dsm({ weighting: "conventional", reduce: "sum" }),
    training: training({ nIters: deep ? 950001 : 1300001 }),
    sampling: sampling.pc({ predictor: "reverse_diffusion", corrector: "langevin" }),
  });
}

/**
 * VP / subVP SDE + DDPM++ cont.: centred data, DSM averaged over dimensions, Euler–Maruyama. std(t)
 * as the original computes it (`stdFormula: "original"`, 1 − exp(2c) in float32), so losses and
 * likelihoods of its checkpoints match the original's numbers.
 */
function vpLike(kind: "vp" | "subvp", deep: boolean): Experiment {
  return experiment({
    name: `${kind}/cifar10_ddpmpp${deep ? "_deep" : ""}_continuous`,
    description: `Score SDE: ${kind === "vp" ? "VP" : "subVP"} SDE, DDPM++ cont.${deep ? " deep (8 res. blocks)" : ""}, CIFAR-10, conventional DSM`,
    sde: kind === "vp" ? sde.vp({ stdFormula: "original" }) : sde.subvp({ stdFormula: "original" }),
    model: model.ddpmpp({ numResBlocks: deep ? 8 : 4 }),
    data: data.cifar10({ centered: true }),
    loss: loss.dsm({ weighting: "conventional", reduce: "mean" }),
    training: training({ nIters: deep ? 950001 : 1300001 }),
    sampling: sampling.pc({ predictor: "euler_maruyama", corrector: "none" }),
  });
}

export const scoreSdePresets: Experiment[] = [
  ve(false),
  ve(true),
  vpLike("vp", false),
  vpLike("vp", true),
  vpLike("subvp", false),
  vpLike("subvp", true),
];

/**
 * ScoreFlow (Song, Durkan, Murray & Ermon, NeurIPS 2021) presets: yang-song/score_flow's
 * `configs/{vp,subvp}/{cifar10,imagenet32}_ddpmpp{,_deep}_continuous.py` under its
 * `default_{cifar10,imagenet32}_configs.py`, trained as its released "likelihood_iw" checkpoints
 * were: likelihood weighting with importance sampling of t (∝ g²/std²), DSM averaged over the
 * dimensions, and the smallest training time of each config (1e-5; ImageNet32 VP 5e-5 with
 * importance sampling; subVP 1e-2). The high-order DSM paper fine-tunes these VP checkpoints;
 * `--set loss.terms[0].importanceSampling=false` gives the "likelihood" ones and
 * `--set loss.terms[0].weighting=conventional --set loss.terms[0].importanceSampling=false` the
 * plain ones (their smallest time then stays as written here).
 *
 * The high-order paper's first-order VE NCSN++ baselines on ImageNet32, released as flax files on
 * mle_score_ode's releases page, are `highorder/ve_imagenet32{,_deep}_order1` (that repository's
 * `configs/ve/imagenet32_ncsnpp{,_deep}_continuous.py` at score-matching order 1).
 *
 * All these checkpoints are flax training states (`fpd ckpt inspect <workdir>` reads them as they are).
 * Not reproduced: score_flow's VPSDE takes std = √(−2c) for |c| ≤ 1e-3 (its "high_precision"
 * branch); fpdiff computes the exact std stably, a relative difference below 5e-4 at t < 0.01
 * (README, Checkpoints).
 */
import { data, evaluation, experiment, loss, model, sampling, sde, training, type Experiment } from "../src/dsl/index.js";

type Kind = "vp" | "subvp";
type Dataset = "cifar10" | "imagenet32";

/** score_flow's `training.smallest_time` for the config (with likelihood weighting and IS). */
function smallestTime(kind: Kind, dataset: Dataset): number {
  if (kind === "subvp") return 1e-2;
  return dataset === "imagenet32" ? 5e-5 : 1e-5;
}

function ddpmpp(kind: Kind, dataset: Dataset, deep: boolean): Experiment {
  const cifar = dataset === "cifar10";
  return experiment({
    name: `scoreflow/${kind}/${dataset}_ddpmpp${deep ? "_deep" : ""}_continuous`,
    description:
      `ScoreFlow: ${kind === "vp" ? "VP" : "subVP"} SDE, DDPM++ cont.${deep ? " deep" : ""}, ` +
      `${cifar ? "CIFAR-10" : "ImageNet 32×32"}, likelihood-weighted DSM with importance sampling`,
    // score_flow's VPSDE takes std = √(−2c) where |c| ≤ 1e-3 (its high-precision branch)
    sde: kind === "vp" ? sde.vp({ stdFormula: "scoreflow" }) : sde.subvp({ stdFormula: "scoreflow" }),
    model: model.ddpmpp({ numResBlocks: deep ? 8 : 4, dropout: cifar ? 0.1 : 0 }),
    data: cifar ? data.cifar10({ centered: true }) : data.imagenet32({ centered: true }),
    loss: loss.dsm({
      weighting: "likelihood",
      importanceSampling: true,
      reduce: "mean",
      eps: smallestTime(kind, dataset),
    }),
    training: training({ batchSize: 128, nIters: deep ? 950001 : 1300001, logFreq: 100, evalFreq: 100 }),
    eval: evaluation({
      beginCkpt: deep ? 19 : 26,
      endCkpt: deep ? 19 : 26,
      batchSize: 1024,
      enableSampling: false,
      enableLoss: false,
      enableBpd: true,
      bpd: { dataset: "test", repeats: cifar ? 5 : 1 },
    }),
    sampling: sampling.ode({ eps: kind === "subvp" ? 1e-2 : 1e-3 }),
  });
}

const KINDS: Kind[] = ["vp", "subvp"];
const DATASETS: Dataset[] = ["cifar10", "imagenet32"];

export const scoreFlowPresets: Experiment[] = DATASETS.flatMap((d) =>
  KINDS.flatMap((k) => [ddpmpp(k, d, false), ddpmpp(k, d, true)]),
);

/**
 * High-order DSM (Lu et al., ICML 2022) presets for VE NCSN++ cont. (shallow and deep) on CIFAR-10
 * and ImageNet 32×32, field for field LuChengTHU/mle_score_ode's `configs/ve/*_continuous.py` under
 * its `default_{cifar10,imagenet32}_configs.py`, with `training.score_matching_order` 1, 2 or 3:
 * DSM averaged over dimensions (no likelihood weighting) plus ℓ₂ (order 2) or ℓ₂ + ℓ₃ (order 3),
 * both parts of ℓ₂, unit weights, one Rademacher probe. Batch 128 for orders 1–2 and 48 for order
 * 3 (the original's note). `nIters` is the original config's; the paper fine-tunes the Score SDE
 * checkpoint (CIFAR-10) for 100k iterations — pass `--set training.nIters=100000` for that.
 */
import {
  data,
  evaluation,
  experiment,
  loss,
  model,
  sampling,
  sde,
  training,
  type Experiment,
  type LossExpr,
} from "../src/dsl/index.js";
import type { Order } from "./terms.js";

function lossFor(order: Order): LossExpr {
  const first = loss.dsm({ weighting: "conventional", importanceSampling: false, reduce: "mean", eps: 1e-5 });
  if (order === 1) return first;
  return first.plus(
    loss.highOrder({
      order,
      parts: ["frobenius", "trace"],
      lambdas: { second: 1, third: 1 },
      estimator: "hutchinson",
      probe: "rademacher",
    }),
  );
}

function cifar10(deep: boolean, order: Order): Experiment {
  return experiment({
    name: `highorder/ve_cifar10${deep ? "_deep" : ""}_order${order}`,
    description: `High-order DSM: VE, NCSN++ cont.${deep ? " deep" : ""}, CIFAR-10, ${order === 1 ? "first-order baseline" : `order ${order}`} (mean-reduced DSM${order > 1 ? " + ℓ₂" : ""}${order > 2 ? " + ℓ₃" : ""})`,
    sde: sde.ve(),
    model: model.ncsnpp({ numResBlocks: deep ? 8 : 4 }),
    data: data.cifar10(),
    loss: lossFor(order),
    training: training({
      batchSize: order === 3 ? 48 : 128,
      nIters: 4000001,
      logFreq: 100,
      evalFreq: 100,
    }),
    eval: evaluation({
      beginCkpt: 26,
      endCkpt: 26,
      batchSize: 2000,
      enableSampling: true,
      enableLoss: false,
      enableBpd: true,
      bpd: { dataset: "test", repeats: 5 },
    }),
    // The shallow config samples with the ODE, the deep one with PC (as in the originals).
    sampling: deep
      ? sampling.pc({ predictor: "reverse_diffusion", corrector: "langevin", eps: 1e-5 })
      : sampling.ode({ eps: 1e-5 }),
  });
}

function imagenet32(deep: boolean, order: Order): Experiment {
  return experiment({
    name: `highorder/ve_imagenet32${deep ? "_deep" : ""}_order${order}`,
    description: `High-order DSM: VE, NCSN++ cont.${deep ? " deep" : ""}, ImageNet 32×32, ${order === 1 ? "first-order baseline" : `order ${order}`}`,
    sde: sde.ve(),
    model: model.ncsnpp({ numResBlocks: deep ? 8 : 4, dropout: 0 }),
    data: data.imagenet32(),
    loss: lossFor(order),
    training: training({
      batchSize: order === 3 ? 48 : 128,
      nIters: 1400001,
      logFreq: 100,
      evalFreq: 100,
    }),
    eval: evaluation({
      beginCkpt: 26,
      endCkpt: 26,
      batchSize: 1024,
      enableSampling: false,
      enableLoss: false,
      enableBpd: true,
      bpd: { dataset: "test", repeats: 1 },
    }),
    sampling: sampling.ode({ eps: 1e-5 }),
  });
}

const ORDERS: Order[] = [1, 2, 3];

export const highOrderPresets: Experiment[] = [
  ...ORDERS.map((o) => cifar10(false, o)),
  ...ORDERS.map((o) => cifar10(true, o)),
  ...ORDERS.map((o) => imagenet32(false, o)),
  ...ORDERS.map((o) => imagenet32(true, o)),
];

/**
 * The preset registry: every preset by name (`ve/cifar10_ncsnpp_continuous`, `fp/ve_cifar10`,
 * `highorder/ve_cifar10_order2`, `scoreflow/vp/cifar10_ddpmpp_continuous`,
 * `toy/checkerboard_ve_dsm` …) with a one-line description.
 */
import type { Experiment } from "../src/dsl/index.js";
import { scoreSdePresets } from "./scoresde.js";
import { fpPresets } from "./fp.js";
import { highOrderPresets } from "./highorder.js";
import { scoreFlowPresets } from "./scoreflow.js";
import { toyPresets } from "./toy.js";

export interface Preset {
  name: string;
  description: string;
  experiment: Experiment;
}

function entries(list: Experiment[]): Preset[] {
  return list.map((e) => ({ name: e.name, description: e.description ?? "", experiment: e }));
}

/** All presets, in listing order (Score SDE, FP-Diffusion, high-order, ScoreFlow, toys). */
export const presets: readonly Preset[] = [
  ...entries(scoreSdePresets),
  ...entries(fpPresets),
  ...entries(highOrderPresets),
  ...entries(scoreFlowPresets),
  ...entries(toyPresets),
];

const byName = new Map(presets.map((p) => [p.name, p]));
if (byName.size !== presets.length) throw new Error("configs: two presets share a name");

/** The preset of that name, or undefined. The experiment is a fresh copy. */
export function getPreset(name: string): Preset | undefined {
  const p = byName.get(name);
  return p && { ...p, experiment: structuredClone(p.experiment) };
}

/** Every preset name. */
export function presetNames(): string[] {
  return presets.map((p) => p.name);
}

/**
 * Named toy budgets for `fpd toy --budget`. `paper`: the high-order paper's toy (Lu et al. 2022,
 * toy.py): 100k updates at batch 5000 per model — from scratch (`steps`), or in the fine-tune
 * protocol a 50k-update DSM base continued 50k updates by each method, so every model has seen the
 * paper's 100k. A GPU job: the step is captured in a CUDA graph (`training.cudaGraph`, falls back
 * to the plain step on a CPU), bench/engine/step_graph.py measures what that buys.
 */
export interface ToyBudget {
  /** Updates per method, from scratch. */
  steps: number;
  /** Fine-tune protocol: updates of the DSM base, and further updates of each copy. */
  baseSteps: number;
  finetuneSteps: number;
  batchSize: number;
  /** Overrides applied to every experiment of the job. */
  set: string[];
  note: string;
}

export const TOY_BUDGETS = {
  paper: {
    steps: 100_000,
    baseSteps: 50_000,
    finetuneSteps: 50_000,
    batchSize: 5_000,
    set: ["training.cudaGraph=true"],
    note: "the high-order paper's toy budget: 100k updates at batch 5000 per model (finetune: 50k base + 50k further); CUDA-graph step",
  },
} as const satisfies Record<string, ToyBudget>;
export type ToyBudgetName = keyof typeof TOY_BUDGETS;

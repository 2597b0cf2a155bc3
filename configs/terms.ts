/**
 * What several preset families share of their losses, stated once.
 */

/** Score-matching order of the high-order presets: 1 (DSM alone), 2 (+ ℓ₂), 3 (+ ℓ₂ + ℓ₃). */
export type Order = 1 | 2 | 3;

/**
 * FP-Diffusion's score-FPE term as sony/fp-diffusion's CIFAR-10 configs set it: the vector and the
 * scalar residual ('both'), 'll' weighting, α = 0.15, β = 0.01, m = 2, at the perturbed points. How
 * ∂t s and ∇·s are computed (and any calibration) is each family's.
 */
export const FP_DIFFUSION_FPE = { mode: "both", alpha: 0.15, beta: 0.01, m: 2, weighting: "ll", points: "pert" } as const;

#!/usr/bin/env bash
# The numerics benchmarks on CUDA, ours against the originals (carried in .orig/, never committed).
set -uo pipefail
export FPD_ORIGINAL_MLE_SCORE_ODE="$PWD/.orig/LuChengTHU+mle_score_ode" FPD_ORIGINAL_FP_DIFFUSION="$PWD/.orig/sony+fp-diffusion"
timeout 150 python3 bench/numerics/likelihood_toy.py --device cuda --n 5000 2>&1 | tail -6
timeout 150 python3 bench/numerics/loss_cost_toy.py --device cuda --batch 5000 2>&1 | tail -10
timeout 200 python3 bench/numerics/fp_step_ncsnpp.py --device cuda --nf 128 --ch-mult 1,2,2,2 --num-res-blocks 4 --batch 16 2>&1 | tail -10

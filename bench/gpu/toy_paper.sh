#!/usr/bin/env bash
# The high-order paper's toy budget on a GPU (issue 13, item 6): 100k updates at batch 5000 per
# model, the CUDA-graph step, for dsm, order 2, order 3 and the score-FPE setting that lowered both
# toys' NLL in ablations/results/fpe_alpha (both terms, g², shares 1e-2 / 2e-2), on both data sets;
# NLL by the ODE on 2000 test points, checkerboard densities as PNGs. The same experiments as
# `fpd toy --budget paper --protocol scratch` (which needs the worker socket), directly in Python.
#   bash bench/gpu_run.sh env step_graph toy_paper      # needs node and dist/ (experiments are resolved by the DSL)
# Sized for the device tool's 10-minute calls: each call trains until FPD_PAPER_SECONDS (default
# 480 s) and stops with a meta checkpoint in runs/toy-paper; calling it again resumes (while the
# machine is warm). At the H100's plain-step rates (214 / 93 / 66 / 59 it/s) the full budget is
# ~8 / 18 / 25 / 28 min per data set plain, a third of that at the ≥ 3× target: several calls.
set -uo pipefail
pics="${OUT:-bench/results}/toy_paper_pics"
mkdir -p "$pics"
left="${FPD_PAPER_SECONDS:-480}"
for data in ${FPD_PAPER_DATA:-checkerboard mog1d}; do
  start=$(date +%s)
  timeout $((left + 60)) python3 bench/engine/toy_quality.py --device cuda --cuda-graph --dataset "$data" \
    --batch 5000 --steps "${FPD_PAPER_STEPS:-100000}" --losses "${FPD_PAPER_LOSSES:-dsm,order2,order3,dsm_fpe_shares}" \
    --n 2000 --grid 120 --pictures "$pics" --workdir runs/toy-paper --time-limit "$left" --tag paper 2>&1 | tail -8
  left=$((left - ($(date +%s) - start)))
  [ "$left" -le 30 ] && { echo "time used up: run again to resume"; break; }
done

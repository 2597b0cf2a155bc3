#!/usr/bin/env bash
# Bits/dim of the fixture networks on CUDA at full size (4 images, 32 × 32): the tight float64
# reference, fpdiff before and after the per-sample solver, each image alone, and Score SDE's own
# likelihood.py (FPD_ORIGINAL_SCORE_SDE, carried in .orig/, never committed) on the same network,
# images and probe. Run by `bash bench/gpu_run.sh likelihood`; ~8 minutes on an H100-class GPU.
set -uo pipefail
CACHE="bench/results/likelihood_fixture.cuda.cache.json"
timeout 540 python3 bench/numerics/likelihood_fixture.py --device cuda --n 4 --size 32 --cache "$CACHE" \
  --variants reference,after,after_alone,before,original,original_alone,tdq_state64,tdq_rms,after_mixed 2>&1 | tail -30

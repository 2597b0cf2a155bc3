#!/usr/bin/env bash
# Toy quality on CUDA with a longer budget than the CPU demo: NLL after N steps per method at
# batch 5000, with density pictures (written to $OUT when run by the device tool).
set -uo pipefail
pics="${OUT:-bench/results}/quality_pics"
mkdir -p "$pics"
timeout 560 python3 bench/engine/toy_quality.py --device cuda --batch 5000 --steps "${FPD_QUALITY_STEPS:-4000}" \
  --losses "${FPD_QUALITY_LOSSES:-dsm,order3,dsm_fpe}" --n 2000 --grid 120 --pictures "$pics" --tag gpu 2>&1 | tail -12

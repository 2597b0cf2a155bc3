#!/usr/bin/env bash
# Issue 12 on a lent GPU (run by `bash bench/gpu_run.sh scale`; NOT run yet — no GPU was lent to the
# sessions that wrote it): the NCSN++ training step at batch 48 for dsm / order 2 / order 3 / dsm +
# score FPE, then whole-test-set bits/dim throughput (NCSN++ VE, fp32 and TF32) against Score SDE's
# likelihood.py when a checkout is in FPD_ORIGINAL_SCORE_SDE. Without FPD_DATA_DIR a synthetic
# CIFAR-10 in the official format stands in (throughput only: NFE depends on the images and the
# weights, so pass real data and a checkpoint for figures to quote). The full grid (VP DDPM++ too)
# is `bash bench/scale/gpu.sh all`. Needs node and dist/ (experiments are resolved by the TS DSL).
set -uo pipefail
if [ -z "${FPD_DATA_DIR:-}" ]; then
  FPD_DATA_DIR="$(mktemp -d)/cifar10"
  python3 -c "import sys; from fpdiff.synthetic import write_synthetic_cifar10 as w; w(sys.argv[1], 256, 0)" "$FPD_DATA_DIR"
  export FPD_DATA_DIR
  echo "synthetic CIFAR-10 at $FPD_DATA_DIR"
fi
timeout 200 python3 bench/scale/step_gpu.py --batch 48 --steps 10 2>&1 | tail -8
skip=(--skip-original)
[ -d "${FPD_ORIGINAL_SCORE_SDE:-/nonexistent}" ] && skip=()
for prec in fp32 tf32; do
  timeout 160 python3 bench/scale/bpd_gpu.py --arch ve_ncsnpp --precision "$prec" --images 128 --batch 128 \
    --rtol 1e-5 --atol 1e-5 "${skip[@]}" 2>&1 | tail -8
done

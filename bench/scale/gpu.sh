#!/usr/bin/env bash
# GPU benchmarks of issue 12, prepared for a session with a GPU (NOT run yet: no GPU was lent to
# the session that wrote them). One command each; results land in bench/results/.
#   bash bench/scale/gpu.sh bpd       whole-test-set bpd throughput vs Score SDE's likelihood.py
#   bash bench/scale/gpu.sh step      training step dsm / order2 / order3 / dsm+FPE, NCSN++, batch 48
# Needs: torch 2.x + CUDA (npm run setup -- --conda), FPD_DATA_DIR with CIFAR-10 (cifar-10-batches-py),
# FPD_ORIGINAL_SCORE_SDE (a score_sde_pytorch checkout) for the original's likelihood.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/py${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
case "${1:-all}" in
  bpd|all)
    for arch in ve_ncsnpp vp_ddpmpp; do
      for prec in fp32 tf32; do
        timeout 1200 python3 bench/scale/bpd_gpu.py --arch "$arch" --precision "$prec" --images 256 --batch 128 --rtol 1e-5 --atol 1e-5
      done
    done
    ;;&
  step|all)
    timeout 900 python3 bench/scale/step_gpu.py --batch 48 --steps 20
    ;;
esac

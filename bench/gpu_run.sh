#!/usr/bin/env bash
# One call on a lent GPU machine (torch 2.x + CUDA): the torch-2 compatibility run of the Python
# tests, then every benchmark's CUDA variant. Results land in bench/results/ and, when $OUT is
# set (the device tool), are copied there. Usage: bash bench/gpu_run.sh [steps...]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/py${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export FPD_ORIGINAL_SCORE_SDE="${FPD_ORIGINAL_SCORE_SDE:-$PWD/.orig/score_sde_pytorch}"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(env compat models)
STAMP="$(mktemp)"  # results newer than this are the ones this call made
for step in "${steps[@]}"; do
  echo "=== $step ==="
  case "$step" in
    env)
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
      ;;
    compat)
      # every Python test that needs no worker socket (pyzmq is not on the GPU image)
      timeout 300 python3 -m pytest py/tests -q -p no:cacheprovider \
        --ignore=py/tests/test_protocol.py --ignore=py/tests/test_models_ops.py \
        --ignore=py/tests/test_ops_numerics.py --ignore=py/tests/test_ops_train.py \
        -k "not worker" 2>&1 | tail -25
      ;;
    models)
      for opts in "" "--tf32" "--amp bf16" "--tf32 --channels-last"; do
        timeout 240 python3 bench/models/bench_networks.py --device cuda --batch 48 $opts 2>&1 | tail -12
      done
      ;;
    *) if [ -f "bench/gpu/$step.sh" ]; then timeout 560 bash "bench/gpu/$step.sh"; else echo "unknown step $step"; fi ;;
  esac
done
if [ -n "${OUT:-}" ]; then find bench/results -maxdepth 1 -name '*cuda*.json' -newer "$STAMP" -exec cp {} "$OUT"/ \; ; fi

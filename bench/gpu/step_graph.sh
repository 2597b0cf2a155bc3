#!/usr/bin/env bash
# The CUDA-graph training step vs the plain step on CUDA, batch 5000, every toy loss, side by side
# in one run (updates/s, speed-up, equality of the updates). Target: ≥ 3× for dsm and order3.
#   bash bench/gpu_run.sh env step_graph
set -uo pipefail
timeout 500 python3 bench/engine/step_graph.py --device cuda --batch 5000 --steps 100 --check 20 2>&1 | tail -8

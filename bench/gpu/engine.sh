#!/usr/bin/env bash
# Toy training throughput on CUDA at batch 5000 for every loss.
set -uo pipefail
timeout 200 python3 bench/engine/toy_throughput.py --device cuda --batch 5000 --steps 30 2>&1 | tail -8

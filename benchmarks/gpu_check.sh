#!/usr/bin/env bash
# One prepared GPU check (issue #13): CUDA parity (fp32, bf16) of a decoder and an
# encoder against transformers, one AMP training step, greedy generation tokens/s
# against transformers.generate() at batch 1 and 8. Under 10 minutes on one GPU.
#   bash benchmarks/gpu_check.sh            # needs CUDA
#   bash benchmarks/gpu_check.sh --dry-run  # tiny configs on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"

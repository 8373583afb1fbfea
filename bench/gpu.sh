#!/usr/bin/env bash
# GPU check: one fold of the full preset of convnextv2 and swin, limited batches, bf16/16-mixed; prints images/s
# and peak GPU memory. Run alone on a CUDA machine after `make install`; about 8 minutes at most.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "$PYTHON" bench/gpu.py "$@"

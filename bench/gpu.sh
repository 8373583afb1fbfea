#!/usr/bin/env bash
# GPU check: one fold of each full preset (EVA02-L, EVA-giant, ViT-giant CLIP, ConvNeXt-V2-H, Swin-B) with its own settings,
# then its frozen feature extraction; prints images/s and peak GPU memory. Run alone on a CUDA machine after `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "$PYTHON" bench/gpu.py "$@"

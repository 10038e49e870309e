#!/usr/bin/env bash
# The README's CUDA figures, for a machine with an NVIDIA GPU (run from the repository root):
#   bash benchmarks/cuda_figures.sh            # results in $OUT (default ./cuda-figures)
# LD-Pruner's scoring cost of the sd15 preset at edgeldm prune's defaults (512 px) on the GPU, and the
# sd15 UNet step pruned to 0.65 of its MACs / original in torch fp16 on the GPU. Wheels in .whl/ (if
# any) are installed first: a GPU image whose Python lacks our pinned diffusers / transformers.
set -euo pipefail
OUT=${OUT:-$PWD/cuda-figures}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .whl ]; then
  python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/edgeldm-deps .whl/*.whl
  export PYTHONPATH=/tmp/edgeldm-deps
fi
python3 -m pip install -q --upgrade --no-index --no-deps --no-build-isolation --no-compile --target /tmp/edgeldm-pkg .
export PYTHONPATH=/tmp/edgeldm-pkg:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
lscpu > "$OUT/lscpu.txt"
cd /tmp  # not the repository root: its edgeldm/ folder would shadow the installed package
python3 -m edgeldm.benchmarks.prune_bench --json "$OUT/prune_score_cost_sd15_cuda.json" \
  score-cost sd15 --device cuda --candidates ${CANDIDATES:-4}
python3 -m edgeldm.benchmarks.prune_bench --json "$OUT/prune_latency_sd15_cuda_fp16.json" \
  latency --backend torch --device cuda --dtype float16 --size 512 --repeat 20 --threads "$(nproc)"

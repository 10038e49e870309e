#!/usr/bin/env bash
# The README's CUDA figures, for a machine with an NVIDIA GPU (run from the repository root):
#   bash benchmarks/cuda_figures.sh            # results in $OUT (default ./cuda-figures)
# LD-Pruner's scoring cost of the sd15 preset at edgeldm prune's defaults (512 px) on the GPU, and the
# sd15 UNet step pruned to 0.65 of its MACs / original in torch fp16 on the GPU; first a smoke run of the
# training stages on the GPU (tiny, a few steps each: prune -> finetune -> distill, validation included),
# since CI has no GPU to catch a tensor left on the wrong device. Wheels in .whl/ (if
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
S=/tmp/edgeldm-gpu-smoke; rm -rf $S; mkdir -p $S
python3 -m edgeldm prune tiny -o $S/p --target-macs 0.7 --samples 8 --steps 4 --latency-repeat 1
python3 -m edgeldm finetune $S/p --teacher tiny -o $S/f --steps 20 --batch-size 16 --teacher-samples 32 \
  --scene-samples 64
python3 -m edgeldm distill $S/f --teacher tiny -o $S/l --steps 20 --batch-size 16 --teacher-samples 32 \
  --validate-every 10
python3 -m edgeldm distill tiny -o $S/l2 --steps 10 --batch-size 16 --teacher-samples 32 --teacher-draws 2 \
  --validate-every 0
echo "gpu smoke: prune, finetune, distill (live and table) ran on $(python3 -c 'import torch; print(torch.cuda.get_device_name())')"
python3 -m edgeldm.benchmarks.studies.prune_bench --json "$OUT/prune_score_cost_sd15_cuda.json" \
  score-cost sd15 --device cuda --candidates ${CANDIDATES:-4}
python3 -m edgeldm.benchmarks.studies.prune_bench --json "$OUT/prune_latency_sd15_cuda_fp16.json" \
  latency --backend torch --device cuda --dtype float16 --size 512 --repeat 20 --threads "$(nproc)"

#!/usr/bin/env bash
# Execute the shipped sd15 recipes end to end with every stage shrunk through --set: proves that each
# recipe's stages and options work together, not the quality of the result (the weights are random).
#   usage: docs/recipes-smoke.sh [MODEL (default tiny-random)] [OUT folder (default ./recipes-smoke)]
#   RECIPES="sd15-phone-coreml" docs/recipes-smoke.sh      # only some of them
set -uo pipefail
M=${1:-tiny-random}
OUT=${2:-recipes-smoke}
COMMON=(--set prune.samples=2 --set prune.steps=2 --set prune.remove=3
        --set finetune.steps=2 --set finetune.teacher-samples=4 --set finetune.batch-size=2
        --set finetune.scene-samples=0
        --set distill.steps=2 --set distill.teacher-samples=4 --set distill.batch-size=2)
status=0
for R in ${RECIPES:-sd15-laptop-openvino sd15-phone-coreml sd15-jetson-onnx}; do
  case $R in
    sd15-laptop-openvino) EXTRA=(--set distill-vae.steps=2 --set distill-vae.teacher-samples=4
                                 --set distill-vae.batch-size=2 --set distill-vae.teacher-steps=2
                                 --set distill-vae.scene-samples=0 --set distill-vae.min-psnr=0
                                 --set quantize.calib-samples=4 --set quantize.image-prompts=2
                                 --set bench.repeat=1 --set bench.warmup=0) ;;
    sd15-phone-coreml)    EXTRA=(--set quantize.calib-samples=4 --set quantize.image-prompts=2) ;;
    # tiny-random's VAE factor is 2: 512 px would be a 256x256 latent whose attention needs > 24 GB
    sd15-jetson-onnx)     EXTRA=(--set bench.repeat=1 --set bench.warmup=0 --set export.height=128
                                 --set export.width=128) ;;
  esac
  echo "=== $R on $M"
  if ! edgeldm compress "$M" --recipe "$R" -o "$OUT/$R" --overwrite "${COMMON[@]}" "${EXTRA[@]}"; then
    status=1
  fi
done
exit $status

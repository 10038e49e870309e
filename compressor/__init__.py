"""edgeldm.compressor — LD-Pruner operator scoring and channel pruning, KD finetuning, latent consistency
distillation and quantization passes. Imports torch lazily, inside the passes."""

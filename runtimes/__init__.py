"""edgeldm.runtimes — torch-free samplers, tokenizer and backend sessions over an exported bundle.

This package must import with only the base dependencies installed (numpy, tokenizers, pillow): never
import torch, diffusers or transformers here; a test enforces it.
"""

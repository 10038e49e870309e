"""edgeldm.runtimes — torch-free samplers, tokenizer and backend sessions over an exported bundle.

This package must import with only the base dependencies installed (numpy, tokenizers, pillow): never
import torch, diffusers or transformers here; a test enforces it.
"""

__all__ = ["Text2Image", "PromptTokenizer", "open_session"]

_EXPORTS = {"Text2Image": ".text2image", "PromptTokenizer": ".tokenizer", "open_session": ".backends"}


def __getattr__(name: str):
    # lazy, so that importing a submodule (the samplers) does not load every backend's wrapper
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

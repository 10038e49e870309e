"""Prompt tokenization with the ``tokenizers`` library from a bundle's ``tokenizer/tokenizer.json``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import EdgeLDMError

logger = logging.getLogger("edgeldm")
#: tokens of a truncated prompt's dropped tail quoted in the warning (a pasted essay is not echoed whole)
DROPPED_SHOWN = 12


class PromptTokenizer:
    """CLIP BPE ids padded to ``max_length`` exactly as diffusers' pipelines pad them.

    Prompts longer than ``max_length`` tokens are cut to ``<|startoftext|> … <|endoftext|>`` of that
    length (what ``truncation=True`` does in transformers), with a warning naming what was dropped.
    """

    def __init__(self, folder: str | Path, *, max_length: int = 77, pad_token_id: int | None = None):
        from tokenizers import Tokenizer

        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise EdgeLDMError(f"{path} is missing", hint="re-export the bundle with `edgeldm export`")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = max_length
        self.eos_id = self.tokenizer.token_to_id("<|endoftext|>")
        self.pad_id = self.eos_id if pad_token_id is None else pad_token_id

    def __call__(self, prompts: list[str]) -> np.ndarray:
        out = np.full((len(prompts), self.max_length), self.pad_id, dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids = self.tokenizer.encode(prompt).ids
            if len(ids) > self.max_length:
                lost = ids[self.max_length - 1:-1]
                dropped = self.tokenizer.decode(lost[:DROPPED_SHOWN])
                more = f" ... ({len(lost) - DROPPED_SHOWN} tokens more)" if len(lost) > DROPPED_SHOWN else ""
                logger.warning("prompt is longer than %d tokens; dropped %d: %r%s", self.max_length, len(lost),
                               dropped, more)
                ids = ids[: self.max_length - 1] + [self.eos_id]
            out[row, : len(ids)] = ids
        return out

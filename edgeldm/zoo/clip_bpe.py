"""The real CLIP BPE tokenizer files, built offline.

Stable Diffusion tokenizes prompts with OpenAI CLIP's byte-level BPE (49 408 tokens). No model hub is
reachable, so edgeldm carries the BPE merges file that OpenAI's CLIP and OpenCLIP distribute,
``data/bpe_simple_vocab_16e6.txt.gz`` (copied unmodified from the ``open_clip_torch`` 3.3.0 wheel on
PyPI, MIT licence in ``data/LICENSE.open_clip``), and derives ``vocab.json`` / ``merges.txt`` from it
exactly as CLIP's ``SimpleTokenizer`` does. ``CLIPTokenizer`` over those files gives Stable
Diffusion's token ids ("a photo of a cat" -> 49406 320 1125 539 320 2368 49407).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

BPE_RESOURCE = "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49408
#: CLIP keeps the first 49152 - 256 - 2 merges of the file (its first line is a version header)
N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode map (the alphabet the merges are written in)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _read_merges() -> list[str]:
    raw = resources.files("edgeldm.zoo").joinpath("data", BPE_RESOURCE).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BPE_SHA256:  # a damaged install would silently change every token id
        raise RuntimeError(f"packaged CLIP BPE file has SHA-256 {digest}, expected {BPE_SHA256}; reinstall edgeldm")
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    return lines[1 : N_MERGES + 1]


def build_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """Return (token -> id, merges) in the order OpenAI's CLIP builds them."""
    merges = _read_merges()
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [t + "</w>" for t in alphabet]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == VOCAB_SIZE, len(tokens)
    return {t: i for i, t in enumerate(tokens)}, merges


def cache_dir() -> Path:
    base = os.environ.get("EDGELDM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgeldm")
    return Path(base)


@lru_cache(maxsize=None)
def tokenizer_files() -> tuple[str, str]:
    """Paths of ``vocab.json`` and ``merges.txt`` (written once into the cache, atomically)."""
    target = cache_dir() / f"clip-bpe-{BPE_SHA256[:12]}"
    vocab_path, merges_path = target / "vocab.json", target / "merges.txt"
    if not (vocab_path.is_file() and merges_path.is_file()):
        vocab, merges = build_vocab_and_merges()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".clip-bpe-", dir=target.parent))
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; its files are identical
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
    return str(vocab_path), str(merges_path)


def clip_tokenizer(tokenizer_config: dict | None = None):
    """A ``transformers.CLIPTokenizer`` with the real CLIP vocabulary and the given special tokens."""
    from .._lazy import require

    transformers = require("transformers")
    kwargs = {"model_max_length": 77, "pad_token": "<|endoftext|>"}
    kwargs.update({k: v for k, v in (tokenizer_config or {}).items() if k != "tokenizer_class"})
    vocab_file, merges_file = tokenizer_files()
    return transformers.CLIPTokenizer(vocab_file=vocab_file, merges_file=merges_file, **kwargs)

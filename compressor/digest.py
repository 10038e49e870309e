"""A content digest of modules' weights, for caches that must not outlive an edit of the model."""

from __future__ import annotations


def weights_digest(*modules) -> str:
    """SHA-256 over the modules' parameters and buffers as they are in memory (names, dtypes, shapes, bytes)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for module in modules:
        for name, t in (*module.named_parameters(), *module.named_buffers()):
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            # reshape(-1): a 0-dim tensor cannot be viewed as bytes; hashlib reads the array's buffer, no copy
            h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return h.hexdigest()

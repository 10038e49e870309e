"""Mixed precision by sensitivity: which blocks of a graph to keep in float so the output PSNR meets a floor.

1. Group the graph's nodes by the block they come from: for the UNet ``down_blocks.N``, ``mid_block``,
   ``up_blocks.N`` and the top-level layers (``conv_in``, ``time_embedding``, ``conv_out``, ...); for the text
   encoder ``text_model.encoder.layers.N`` and ``text_model.embeddings``; for the VAE decoder
   ``decoder.up_blocks.N``, ``decoder.mid_block``, ...
2. Quantize one group at a time (every other group kept float) and measure the output PSNR against fp32:
   the lower it is, the more sensitive the group.
3. Start from everything quantized; while the PSNR is below the floor, keep the next most sensitive group
   in float. The result — the groups kept float — is the recipe, stamped into the manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from .schemes import WRAPPERS, module_path

logger = logging.getLogger("edgeldm")
#: module-path segments that only contain blocks (a block is one level below them)
CONTAINERS = ("text_model", "encoder", "decoder")
#: module lists whose items are blocks of their own
INDEXED = ("down_blocks", "up_blocks", "layers")


def block_of(node_name: str) -> str | None:
    """The UNet block a node belongs to; None for nodes outside any module (graph-level constants, outputs)."""
    segments = node_name.strip("/").split("/")
    if len(segments) < 3 or segments[0] not in WRAPPERS:
        return None
    parts = module_path(node_name).split(".")
    if len(parts) == 1 and parts[0] in CONTAINERS:  # a container's own ops (pooling): no block; as a group its
        return None                                 # name would prefix, and so exclude, every block inside it
    prefix = []
    while len(parts) > 1 and parts[0] in CONTAINERS:  # text_model.encoder.layers.3, decoder.up_blocks.0
        prefix.append(parts.pop(0))
    if parts[0] in INDEXED and len(parts) > 1:
        return ".".join(prefix + parts[:2])
    return ".".join(prefix + parts[:1])


def block_groups(node_names: list[str]) -> list[str]:
    """Distinct blocks in graph order."""
    return list(dict.fromkeys(b for b in map(block_of, node_names) if b))


@dataclass
class SensitivityResult:
    floor_db: float
    per_group_db: dict[str, float] = field(default_factory=dict)  # PSNR with only that group quantized
    kept_float: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)  # PSNR after each group kept float
    met: bool = False

    def to_dict(self) -> dict:
        return {"floor_db": self.floor_db, "per_group_db": self.per_group_db, "kept_float": self.kept_float,
                "steps": self.steps, "met": self.met}


def search(groups: list[str], psnr_with_excluded: Callable[[tuple[str, ...]], float], floor_db: float) -> \
        SensitivityResult:
    """``psnr_with_excluded(excluded_groups)`` quantizes all but those groups and returns the output PSNR."""
    result = SensitivityResult(floor_db)
    for g in groups:
        result.per_group_db[g] = psnr_with_excluded(tuple(x for x in groups if x != g))
        logger.info("sensitivity: only %s quantized -> %.1f dB", g, result.per_group_db[g])
    order = sorted(groups, key=lambda g: result.per_group_db[g])
    psnr = psnr_with_excluded(())
    result.steps.append({"kept_float": [], "psnr_db": psnr})
    for g in order:
        if psnr >= floor_db:
            break
        result.kept_float.append(g)
        psnr = psnr_with_excluded(tuple(result.kept_float))
        result.steps.append({"kept_float": list(result.kept_float), "psnr_db": psnr})
        logger.info("sensitivity: keeping %s float -> %.1f dB", ", ".join(result.kept_float), psnr)
    result.met = psnr >= floor_db
    return result

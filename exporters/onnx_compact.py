"""Compact an ONNX graph for shipping: the same arithmetic in fewer bytes.

On a small model the graph's structure weighs as much as a quantized model's weights: the quantized tiny UNet
was 1.55 MB of which 0.43 MB was not weights — 1 900 nodes (a third of them shape arithmetic for the dynamic
axes) with exporter names like ``/unet/up_blocks.1/attentions.0/transformer_blocks.0/attn1/Reshape_3_output_0``
and shape annotations. Compacting

1. runs onnxslim (constant folding up to ``FOLD_MAX_BYTES`` per result, dead-node removal, shape-arithmetic
   simplification; dynamic axes stay dynamic),
2. drops ``value_info`` (shape annotations ORT infers again at load) and node names / doc strings,
3. renames internal tensors and initializers to short hexadecimal names — the graph's inputs and outputs
   keep theirs, so runtimes and optimum's pipelines load it unchanged.

It is for the last step before shipping: names that tools match on (``--exclude``, the sensitivity search)
are gone afterwards. Graphs with external data (over 2 GB: SD-size fp32) are left as they are — their
structure is a rounding error next to their weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger("edgeldm")

# constant folding stops at results this large: shape arithmetic folds to a few bytes, but folding e.g. an INT4
# position table through its dequantization stores it in fp32 (tiny's text encoder grew 40 KB that way)
FOLD_MAX_BYTES = 1024


def _short_names(model) -> None:
    """Node names and doc strings cleared, internal tensor names replaced by short ones (in place)."""
    graph = model.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name  # "" marks an omitted optional input
        if name not in renamed:
            renamed[name] = format(len(renamed), "x")
        return renamed[name]

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name, node.doc_string = "", ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]
    graph.doc_string = ""


def _has_subgraphs(model) -> bool:
    from onnx import AttributeProto

    return any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute)


def compact_onnx(path: str | Path) -> dict:
    """Compact the graph file at ``path`` in place; returns the bytes and node counts before and after, or
    ``{"skipped": reason}``. Callers check the result against the original outputs (it is exact here: the tiny
    bundle's three graphs gave bit-identical outputs at two input shapes)."""
    import onnx

    from .._lazy import require

    onnxslim = require("onnxslim")
    path = Path(path)
    if (path.parent / (path.name + "_data")).exists() or any(
            t.data_location == onnx.TensorProto.EXTERNAL
            for t in onnx.load(str(path), load_external_data=False).graph.initializer):
        return {"skipped": "graph with external data (structure is negligible next to its weights)"}
    model = onnx.load(str(path))
    if _has_subgraphs(model):  # If / Loop bodies reference outer names: renaming would need scoping
        return {"skipped": "graph with control-flow subgraphs"}
    before = {"bytes": os.path.getsize(path), "nodes": len(model.graph.node)}
    slim = onnxslim.slim(model, size_threshold=FOLD_MAX_BYTES)
    _short_names(slim)
    onnx.checker.check_model(slim)
    tmp = path.with_name(path.name + ".compact")
    onnx.save_model(slim, str(tmp))
    os.replace(tmp, path)
    after = {"bytes": os.path.getsize(path), "nodes": len(slim.graph.node)}
    logger.info("compacted %s: %d -> %d bytes, %d -> %d nodes", path, before["bytes"], after["bytes"],
                before["nodes"], after["nodes"])
    return {"bytes_before": before["bytes"], "bytes_after": after["bytes"], "nodes_before": before["nodes"],
            "nodes_after": after["nodes"]}

"""torch -> ONNX (legacy TorchScript exporter: fast, and what optimum and ONNX Runtime tooling expect)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .._lazy import require
from ..io_spec import ComponentIO
from .dummy_inputs import example_inputs

logger = logging.getLogger("edgeldm")

ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx_data"
PROTOBUF_LIMIT = 2**31 - 1
DEFAULT_OPSET = 17


def export_onnx(module, io: ComponentIO, folder: Path, *, opset: int = DEFAULT_OPSET, precision: str = "fp32",
                vocab_size: int = 49408) -> list[Path]:
    """Export ``module`` to ``folder/model.onnx`` (+ ``model.onnx_data`` beyond 2 GB); returns the files.

    Symbolic dims of ``io`` become dynamic axes; a static ``io`` gives a fixed-shape graph. fp16 converts
    the weights and compute with onnxruntime's float16 converter, keeping fp32 inputs and outputs.
    """
    torch = require("torch")
    onnx = require("onnx")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ONNX_FILE
    inputs = example_inputs(io, vocab_size=vocab_size)
    args = tuple(torch.from_numpy(inputs[name]) for name in io.input_names)
    dynamic_axes = {t.name: t.dynamic_axes() for t in (*io.inputs, *io.outputs) if t.dynamic_axes()}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer flags diffusers' shape asserts and the legacy exporter announces its deprecation; neither
        # is actionable for a user, and the validation against torch is what proves the graph right
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # CLIP pools at argmax(input_ids): the gather indices are never negative
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(module, args, str(path), input_names=io.input_names, output_names=io.output_names,
                          dynamic_axes=dynamic_axes or None, opset_version=opset, do_constant_folding=True,
                          dynamo=False)
    model = onnx.load(str(path), load_external_data=False)  # parsed once; weights beyond 2 GB stay on disk
    if _scattered(model):
        if precision != "fp16":  # streamed into one file: never all in memory
            _gather_external_data(model, folder)
            logger.debug("exported %s to %s (external data)", io.component, path)
            return [path, folder / ONNX_DATA_FILE]
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(folder))  # the fp16 converter needs the weights in memory
    if precision == "fp16":
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        # fp32 at the edges: callers feed and read float32 whatever the internal precision. Resize stays
        # fp32: its scales input must be float32, and the converter would turn that constant into fp16.
        _constants_to_initializers(model)  # the converter keeps initializers of blocked ops fp32, not Constants
        model = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True,
                                         op_block_list=[*DEFAULT_OP_BLOCK_LIST, "Resize"])
    for stale in folder.iterdir():  # the exporter may scatter one file per tensor for > 2 GB graphs
        if stale.name != ONNX_FILE:
            stale.unlink()
    large = sum(len(t.raw_data) for t in model.graph.initializer) > PROTOBUF_LIMIT - 64 * 2**20  # room for the graph
    if large:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=ONNX_DATA_FILE, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    files = [path] + ([folder / ONNX_DATA_FILE] if large else [])
    logger.debug("exported %s to %s (%s)", io.component, path, "external data" if large else "single file")
    return files


def _scattered(model) -> list:
    """The tensors the exporter wrote to files of their own (a graph over 2 GB)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def _gather_external_data(model, folder: Path) -> None:
    """Move the tensors the exporter scattered one file each into one ``model.onnx_data`` in ``folder``, copying
    file by file, and save ``model`` (loaded without its external data) pointing at it.

    Loading such a graph whole to save it again would hold a second copy of the weights beside the torch
    model: 20 GB for an SDXL UNet on a machine that has 24.
    """
    onnx = require("onnx")
    from onnx.external_data_helper import ExternalDataInfo

    scattered = set()
    tmp = folder / (ONNX_DATA_FILE + ".tmp")
    with open(tmp, "wb") as out:
        for tensor in _scattered(model):
            info = ExternalDataInfo(tensor)
            with open(folder / info.location, "rb") as f:
                f.seek(info.offset or 0)
                data = f.read(info.length) if info.length else f.read()
            out.write(b"\0" * (-out.tell() % 4096))  # page-aligned: runtimes may map each tensor
            del tensor.external_data[:]  # (onnx's set_external_data wants the bytes in memory: not here)
            for key, value in (("location", ONNX_DATA_FILE), ("offset", out.tell()), ("length", len(data))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
            out.write(data)
            scattered.add(info.location)
    for name in scattered - {ONNX_DATA_FILE}:
        (folder / name).unlink()
    tmp.replace(folder / ONNX_DATA_FILE)
    onnx.save_model(model, str(folder / ONNX_FILE))


def _constants_to_initializers(model) -> None:
    """Turn ``Constant`` nodes holding a tensor into graph initializers, in place."""
    graph = model.graph
    keep = []
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and "value" in attrs and len(node.output) == 1:
            tensor = attrs["value"].t
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def export_for_bundle(job) -> list[Path]:
    """The ONNX backend's exporter (``edgeldm.backends.onnxruntime``); with ``job.onnx_fusion`` the bundle gets
    ONNX Runtime's fused graph and the plain one stays in the scratch folder for the converters that read ONNX."""
    if not job.onnx_fusion:
        job.onnx = export_onnx(job.module, job.io, job.folder, opset=job.opset, precision=job.precision,
                               vocab_size=job.vocab_size)
        return job.onnx
    from .attention_slicing import MatMulAttnProcessor, swapped_attention
    from .onnx_fusion import fuse_onnx

    with swapped_attention(job.module, MatMulAttnProcessor()):  # the attention form the optimizer fuses
        job.onnx = export_onnx(job.module, job.io, job.scratch / job.io.component, opset=job.opset,
                               precision=job.precision, vocab_size=job.vocab_size)
    files, fusion = fuse_onnx(job.onnx[0], job.folder, job.io.component)
    job.entries["onnx"] = {"fusion": fusion}
    return files

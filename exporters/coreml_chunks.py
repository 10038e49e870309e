"""A Core ML ML program split into chunks the Neural Engine compiles (``edgeldm export --chunks N``).

The Neural Engine's compiler takes models up to about 1 GB of weights; SD 1.5's UNet is 1.7 GB in fp16, so
Apple's own pipeline (ml-stable-diffusion) ships it as ``Unet_chunk1`` / ``Unet_chunk2`` and the app runs them
one after the other. This module does that on the converted package: the program's operations, in their
order, are cut where the cumulative weight size reaches ``k / N`` of the total; each chunk's outputs are the
values a later chunk reads (UNet skip connections included), its inputs what it reads from the model's inputs
or an earlier chunk, by name.

The surgery is coremltools' own (``coremltools.models.utils``: the cut rule, first / second chunk programs
with fp32 boundaries, the MIL converter) as its ``bisect_model`` uses it; ``bisect_model`` itself only halves,
and halving a first half again loses the skip connections it passes on to the second, so N chunks are peeled
off the front one at a time: the remainder always ends with the model's outputs, so every value a later chunk
needs is either a model input or an output of a chunk before it — checked below, by name, before anything is
written.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .._lazy import require
from ..errors import EdgeLDMError
from ..runtimes.backends.coreml_session import chunk_name

logger = logging.getLogger("edgeldm")

#: the Neural Engine's compile limit Apple's pipeline chunks for: every chunk's weights at most this
CHUNK_LIMIT_BYTES = 1 << 30
def weights_bytes(package: Path) -> int:
    """Bytes of the package's weight file(s): what the Neural Engine's limit is about."""
    return _bytes_under(Path(package) / "Data" / "com.apple.CoreML" / "weights")


def _bytes_under(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def split_package(package: Path, chunks: int | None, *, limit_bytes: int = CHUNK_LIMIT_BYTES) -> list[dict]:
    """Replace ``package`` (``.../model.mlpackage``) by ``chunks`` packages ``model_chunk<i>.mlpackage`` beside
    it; ``None``: as many as it takes for each to hold at most ``limit_bytes`` of weights (1: leave it whole).

    Returns one entry per chunk, in order: ``{"graph", "inputs", "outputs", "bytes"}`` (names of the values it
    reads and writes, the package's size); ``[]`` when the package stays whole.
    """
    package = Path(package)
    if chunks is not None and chunks < 1:
        raise EdgeLDMError(f"--chunks must be a positive number of chunks, got {chunks}")
    if chunks is None:
        total = weights_bytes(package)
        if total <= limit_bytes:
            return []
        count = math.ceil(total / limit_bytes)
    elif chunks == 1:
        return []
    else:
        count = chunks
    for attempt in range(3):  # the cuts land on operations, so a chunk can overshoot its share a little
        with tempfile.TemporaryDirectory(prefix="edgeldm-chunks-", dir=package.parent) as scratch:
            parts = _peel(package, count, Path(scratch))
            entries = _check_flow(package, parts)
            too_big = [e for e, part in zip(entries, parts) if weights_bytes(part) > limit_bytes]
            if chunks is None and too_big and attempt < 2:
                count += 1
                continue
            if too_big:
                logger.warning("%s: %s above the %.2f GB the Neural Engine compiles (%s)", package.parent.name,
                               ", ".join(Path(e["graph"]).name for e in too_big), limit_bytes / 1e9,
                               "raise --chunks" if chunks else "no cut point left")
            for part, entry in zip(parts, entries):
                shutil.move(str(part), str(package.parent / entry["graph"]))
        shutil.rmtree(package)
        logger.info("%s: Core ML graph in %d chunks of %s MB", package.parent.name, len(entries),
                    " / ".join(f"{e['bytes'] / 1e6:.0f}" for e in entries))
        return entries
    raise AssertionError("unreachable")


def _load_program(package: Path):
    """The package's MIL program (as ``bisect_model`` loads it: operations as a list) and its spec."""
    require("coremltools")
    from coremltools.models import utils

    spec = utils.load_spec(str(package))
    prog = utils._milproto_to_pymil.load(spec, spec.specificationVersion, utils._try_get_weights_dir_path(str(package)))
    if len(prog.functions) != 1 or "main" not in prog.functions:
        raise EdgeLDMError(f"{package}: only single-function Core ML programs can be chunked")
    prog.functions["main"].operations = list(prog.functions["main"].operations)
    return prog, spec


def _cut_index(prog, fraction: float) -> int:
    """The first operation after which ``fraction`` of the weights are behind: not a constant, one output
    read by one operation (coremltools' bisection rule, at any fraction instead of one half). A weight counts
    where it is first read — converted programs may list every constant up front."""
    ops = prog.functions["main"].operations
    position = {id(op): index for index, op in enumerate(ops)}
    weight_at = [0] * len(ops)
    for op in ops:
        if op.op_type == "const" and isinstance(op.val.val, np.ndarray):
            readers = [position[id(child)] for child in op.outputs[0].child_ops if id(child) in position]
            weight_at[min(readers, default=position[id(op)])] += op.val.val.nbytes
    total, seen = sum(weight_at), 0
    for index, op in enumerate(ops):
        seen += weight_at[index]
        if seen >= fraction * total and not op.op_type.startswith("const") and len(op.outputs) == 1 \
                and len(op.outputs[0].child_ops) == 1:
            return index
    raise EdgeLDMError("no operation to cut the Core ML program at", hint="export with fewer --chunks")


def _peel(package: Path, count: int, scratch: Path) -> list[Path]:
    """``count`` chunk packages in ``scratch``: the front ``1/k`` of what remains, ``k`` = chunks still to make."""
    ct = require("coremltools")
    from coremltools.models import utils

    original = ct.models.MLModel(str(package), skip_model_load=True)
    remainder, parts = package, []
    for index in range(1, count + 1):
        left = count - index + 1
        if left == 1:
            rest = ct.models.MLModel(str(remainder), skip_model_load=True)
            parts.append(_save_chunk(rest, original, index, count, scratch))
            break
        prog, spec = _load_program(remainder)
        cut = _cut_index(prog, 1 / left)
        first = utils._make_first_chunk_prog(prog, cut)
        parts.append(_save_chunk(_convert(first, spec), original, index, count, scratch))
        # the first chunk's surgery changed ``prog`` in place: the rest is cut from a fresh load (as bisect_model does)
        second = utils._make_second_chunk_prog(_load_program(remainder)[0], cut)
        remainder = scratch / f"remainder{index}.mlpackage"
        _convert(second, spec).save(str(remainder))
    return parts


def _convert(prog, spec):
    ct = require("coremltools")
    from coremltools.models import utils

    # the program was optimized when the whole graph converted: the empty pass pipeline writes each chunk as cut
    # (the same operations as bisect_model's default pipeline gives, in 2.5x less time)
    return utils._mil_convert(prog, convert_to="mlprogram", convert_from="milinternal",
                              specification_version=spec.specificationVersion, compute_units=ct.ComputeUnit.CPU_ONLY,
                              skip_model_load=True, pass_pipeline=ct.PassPipeline.EMPTY)


def _save_chunk(model, original, index: int, count: int, scratch: Path) -> Path:
    """The chunk with the original's descriptions and metadata (what Xcode shows; the session's I/O
    adaptations), plus which chunk of how many it is."""
    metadata = dict(original.user_defined_metadata)
    model.author, model.version = original.author, original.version
    model.short_description = f"{original.short_description} — chunk {index} of {count}"
    whole = original.get_spec().description
    described = {f.name: f.shortDescription for f in (*whole.input, *whole.output)}
    inputs = [f.name for f in model.get_spec().description.input]
    outputs = [f.name for f in model.get_spec().description.output]
    for name in inputs:
        model.input_description[name] = described.get(name, "activation from an earlier chunk")
    for name in outputs:
        model.output_description[name] = described.get(name, "activation a later chunk reads")
    model.user_defined_metadata.update({**metadata, "chunk": f"{index}/{count}",
                                        "chunk_inputs": json.dumps(inputs), "chunk_outputs": json.dumps(outputs)})
    path = scratch / chunk_name(index)
    model.save(str(path))
    return path


def _check_flow(package: Path, parts: list[Path]) -> list[dict]:
    """Run the chunks on names: each reads only model inputs or earlier chunks' outputs, the last chunk
    writes every model output. Anything else would fail at the app's first prediction; it fails here."""
    ct = require("coremltools")

    whole = ct.models.MLModel(str(package), skip_model_load=True).get_spec().description
    available = {f.name for f in whole.input}
    entries = []
    for index, part in enumerate(parts, 1):
        desc = ct.models.MLModel(str(part), skip_model_load=True).get_spec().description
        inputs, outputs = [f.name for f in desc.input], [f.name for f in desc.output]
        missing = [n for n in inputs if n not in available]
        if missing:
            raise EdgeLDMError(f"Core ML chunk {index} reads {', '.join(missing)}, which no input or earlier chunk "
                               "provides", hint="export with another --chunks count")
        available.update(outputs)
        entries.append({"graph": chunk_name(index), "inputs": inputs, "outputs": outputs,
                        "bytes": _bytes_under(part)})
    lost = [f.name for f in whole.output if f.name not in {*entries[-1]["outputs"]}]
    if lost:
        raise EdgeLDMError(f"the last Core ML chunk does not write {', '.join(lost)}")
    return entries

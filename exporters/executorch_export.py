"""Torch module -> ExecuTorch program (``model.pte``) lowered to XNNPACK.

``torch.export`` of the component, then ``to_edge_transform_and_lower`` with the XNNPACK partitioner and
``to_executorch``. diffusers' default attention processor (``F.scaled_dot_product_attention``) exports safe-softmax
ops XNNPACK does not take, which splits the graph into many delegate pieces with portable-kernel islands between
them; the plain ``AttnProcessor`` (same arithmetic) lowers whole and ran 2.6x faster in the probe, so it is swapped
in for the export and swapped back after. GroupNorm / LayerNorm stay on ExecuTorch's portable kernels (XNNPACK has
none). Lowering takes about a minute even for tiny-random's UNet: ExecuTorch bundles are built once and reused.
"""

from __future__ import annotations

from pathlib import Path

from .._lazy import require
from ..io_spec import ComponentIO
from .attention_slicing import swapped_attention
from .dummy_inputs import example_inputs

PTE_FILE = "model.pte"


def plain_attention(module):
    """Every diffusers model inside ``module`` on ``AttnProcessor`` for the duration; restored afterwards."""
    from diffusers.models.attention_processor import AttnProcessor

    return swapped_attention(module, AttnProcessor())


def export_executorch(module, io: ComponentIO, folder: Path, *, vocab_size: int = 49408) -> list[Path]:
    torch = require("torch")
    inputs = example_inputs(io, vocab_size=vocab_size)
    example = tuple(torch.from_numpy(inputs[n]) for n in io.input_names)
    with torch.no_grad(), plain_attention(module):
        program = torch.export.export(module.eval(), example)
    folder.mkdir(parents=True, exist_ok=True)
    return lower_to_pte(program, folder / PTE_FILE)


def lower_to_pte(program, path: Path) -> list[Path]:
    """An exported program lowered to the XNNPACK delegate and written as an ExecuTorch program."""
    require("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(lowered.buffer)
    return [path]


def export_for_bundle(job) -> list[Path]:
    """The ExecuTorch backend's exporter (``edgeldm.backends.executorch``)."""
    return export_executorch(job.module, job.io, job.folder, vocab_size=job.vocab_size)

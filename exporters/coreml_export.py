"""torch module -> Core ML ML program (``model.mlpackage``), through ``torch.export``.

``torch.export`` -> ``coremltools.convert(ExportedProgram)`` is the path that works with coremltools 9.0
and numpy 2.4 (the ``torch.jit.trace`` frontend fails in ``aten::Int`` casts). Core ML packages have fixed
shapes here, so the component's I/O must be static (``edgeldm export --static``).

Two places where the package differs from the declared :class:`ComponentIO`, both recorded in the
package's descriptions and metadata (``io_adaptations``) and undone by the Core ML session, so callers
feed exactly what the manifest declares:

* ``input_ids`` is int32: Core ML multi-arrays have no int64 (token ids fit easily);
* the UNet's scalar ``timestep`` has shape (1,): Core ML inputs cannot be rank 0.

Inputs and outputs stay float32 whatever the compute precision, as in the ONNX and OpenVINO graphs.
Conversion runs on Linux; prediction needs macOS.

For the Neural Engine: ``attention="split_einsum"`` converts diffusers' attention one head at a time
(:class:`~edgeldm.exporters.attention_slicing.SplitEinsumAttnProcessor`; ``original`` keeps diffusers' own, the
GPU's better form), and a package above the Neural Engine's 1 GB compile limit is split into chunks that run
one after the other (:mod:`edgeldm.exporters.coreml_chunks`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from ..version import __version__
from .._lazy import require
from ..errors import EdgeLDMError
from ..io_spec import ComponentIO
from .dummy_inputs import example_inputs
from ..runtimes.backends.coreml_session import coreml_name

logger = logging.getLogger("edgeldm")

COREML_PACKAGE = "model.mlpackage"
# iOS16 / macOS13: the oldest target with ML programs that Stable Diffusion on Core ML is built for
# (apple/ml-stable-diffusion targets it too) and that coremltools' torch.export frontend supports; later
# targets (iOS17 int8 activations, iOS18 grouped-channel palettization) are the quantizer's business.
DEFAULT_DEPLOYMENT_TARGET = "iOS16"
#: ``--coreml-attention``: the attention diffusers' modules are converted with (Apple's names for the two)
ATTENTION = ("original", "split_einsum")

_DESCRIPTIONS = {
    "input_ids": "CLIP token ids, padded to the sequence length (int32 in Core ML; edgeldm feeds int64 cast down)",
    "unet.sample": "noisy latents, scaled by the scheduler for this timestep",
    "vae_decoder.sample": "decoded image in [-1, 1]",
    "vae_encoder.sample": "image in [-1, 1]",
    "timestep": "diffusion timestep; a scalar in edgeldm's I/O, shape (1,) in Core ML (no rank-0 inputs)",
    "encoder_hidden_states": "text encoder's hidden states (SDXL: both encoders' penultimate, concatenated), one row "
                             "per batch element",
    "text_embeds": "SDXL: text_encoder_2's projected pooled embedding (the UNet input), one row per batch element",
    "time_ids": "SDXL micro-conditioning: original height, width, crop top, left, target height, width",
    "timestep_cond": "guidance-scale embedding (latent consistency models)",
    "latent_sample": "latents divided by the VAE's scaling factor",
    "last_hidden_state": "per-token text embeddings (the UNet's encoder_hidden_states)",
    "pooler_output": "embedding of the end-of-text token",
    "out_sample": "predicted noise (or v / x0, per the scheduler's prediction type)",
    "latent_parameters": "posterior mean and log-variance, stacked on the channel axis",
}
_SHORT = {
    "text_encoder": "CLIP text encoder: token ids -> text embeddings",
    "text_encoder_2": "SDXL's second text encoder (OpenCLIP ViT-bigG): token ids -> text embeddings, pooled projection",
    "unet": "denoising UNet: noisy latents, timestep, text embeddings -> model output",
    "vae_decoder": "VAE decoder: latents -> image in [-1, 1]",
    "vae_encoder": "VAE encoder: image in [-1, 1] -> posterior mean and log-variance",
}


def export_coreml(module, io: ComponentIO, folder: Path, *, precision: str = "fp32", vocab_size: int = 49408,
                  deployment_target: str = DEFAULT_DEPLOYMENT_TARGET, attention: str = "original") -> list[Path]:
    """Convert ``module`` to ``folder/model.mlpackage``; returns the package's files (for the manifest).

    ``precision`` sets the compute precision (fp16 weights and activations, or fp32); I/O stays float32.
    ``attention``: one of :data:`ATTENTION`.
    """
    if not io.is_static:
        dynamic = sorted({d for t in (*io.inputs, *io.outputs) for d in t.shape if isinstance(d, str)})
        raise EdgeLDMError(f"Core ML needs fixed shapes; {io.component} has symbolic dimensions "
                           f"{', '.join(dynamic)}", hint="export with --static (ExportConfig(static=True))")
    if precision not in ("fp32", "fp16"):
        raise EdgeLDMError(f"Core ML precision must be fp32 or fp16, got {precision!r}")
    if attention not in ATTENTION:
        raise EdgeLDMError(f"unknown Core ML attention {attention!r}", hint=f"choose one of {', '.join(ATTENTION)}")
    torch = require("torch")
    ct = require("coremltools")
    if not hasattr(ct.target, deployment_target):
        raise EdgeLDMError(f"unknown Core ML deployment target {deployment_target!r}",
                           hint=f"choose one of {', '.join(t.name for t in ct.target)}")

    example = example_inputs(io, vocab_size=vocab_size)
    args = tuple(torch.from_numpy(example[name]) for name in io.input_names)
    from .attention_slicing import SplitEinsumAttnProcessor, swapped_attention

    with torch.no_grad(), swapped_attention(module, SplitEinsumAttnProcessor() if attention == "split_einsum" else None):
        program = _drop_aliases(torch.export.export(module, args).run_decompositions({}))
    # Typed explicitly: with fp16 compute and an iOS16 target, coremltools makes untyped I/O fp16, and fp16
    # holds token ids exactly only up to 2048. float32 at the edges, like the ONNX and OpenVINO graphs.
    inputs, adaptations = [], {}
    for name in io.output_names:  # Core ML allows no dots in feature names
        if coreml_name(name) != name:
            adaptations.setdefault(name, {})["name"] = [name, coreml_name(name)]
    for spec in io.inputs:
        dtype = np.int32 if np.dtype(spec.dtype).kind in "iu" else np.float32
        shape = spec.shape or (1,)
        if np.dtype(dtype) != np.dtype(spec.dtype):
            adaptations.setdefault(spec.name, {})["dtype"] = [spec.dtype, np.dtype(dtype).name]
        if shape != spec.shape:
            adaptations.setdefault(spec.name, {})["shape"] = [list(spec.shape), list(shape)]
        inputs.append(ct.TensorType(name=spec.name, shape=shape, dtype=dtype))
    model = ct.convert(
        program,
        convert_to="mlprogram",
        inputs=inputs,
        outputs=[ct.TensorType(name=coreml_name(name), dtype=np.float32) for name in io.output_names],
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        minimum_deployment_target=getattr(ct.target, deployment_target),
    )
    _describe(model, io, precision, deployment_target, attention, adaptations, versions={
        "edgeldm": __version__, "coremltools": ct.__version__, "torch": torch.__version__})

    folder.mkdir(parents=True, exist_ok=True)
    package = folder / COREML_PACKAGE
    if package.exists():
        shutil.rmtree(package)
    model.save(str(package))
    files = sorted(p for p in package.rglob("*") if p.is_file())
    logger.debug("exported %s to %s (%s, %d files)", io.component, package, precision, len(files))
    return files


def _drop_aliases(program):
    """Remove ``aten.alias`` nodes (identity views that ``torch.export`` emits for sliced buffers and SDPA
    inputs, e.g. in CLIP's text encoder), which coremltools 9.0 has no converter for."""
    import torch

    graph = program.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.alias.default \
                and all(user.op != "output" for user in node.users):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    program.graph_module.recompile()
    return program


def _describe(model, io: ComponentIO, precision: str, target: str, attention: str, adaptations: dict,
              versions: dict) -> None:
    """Descriptions and metadata a Swift developer sees in Xcode; versions so the artifact is traceable."""
    model.short_description = f"{_SHORT.get(io.component, io.component)} (edgeldm {versions['edgeldm']}, {precision})"
    model.author = "edgeldm"
    model.version = versions["edgeldm"]

    def describe(name: str) -> str:
        if name.startswith("hidden_states."):  # optimum's hidden_states.<layers run>
            layers = name.split(".", 1)[1]
            return f"hidden states after {layers} encoder layers" + (" (the embeddings)" if layers == "0" else "")
        return _DESCRIPTIONS.get(f"{io.component}.{name}", _DESCRIPTIONS.get(name, name))

    for spec in io.inputs:
        model.input_description[spec.name] = describe(spec.name)
    for spec in io.outputs:
        model.output_description[coreml_name(spec.name)] = describe(spec.name)
    model.user_defined_metadata.update({
        "edgeldm_version": versions["edgeldm"],
        "coremltools_version": versions["coremltools"],
        "torch_version": versions["torch"],
        "component": io.component,
        "precision": precision,
        "deployment_target": target,
        "attention": attention,
        "io": json.dumps(io.to_dict()),
        # how the package differs from the declared I/O ({name: {"dtype"|"shape": [declared, Core ML]}})
        "io_adaptations": json.dumps(adaptations),
    })


def export_for_bundle(job) -> list[Path]:
    """The Core ML backend's exporter (``edgeldm.backends.coreml``): from the torch module through torch.export;
    the UNet in ``job.coreml_chunks`` chunks, any graph above the Neural Engine's limit in as many as it needs."""
    from .coreml_chunks import split_package

    files = export_coreml(job.module, job.io, job.folder, precision=job.precision, vocab_size=job.vocab_size,
                          deployment_target=job.coreml_target, attention=job.coreml_attention)
    chunks = split_package(job.folder / COREML_PACKAGE, job.coreml_chunks if job.io.component == "unet" else None)
    if not chunks:
        return files
    job.entries["coreml"] = {"chunks": [{**c, "graph": f"{job.io.component}/{c['graph']}"} for c in chunks]}
    return sorted(p for c in chunks for p in (job.folder / c["graph"]).rglob("*") if p.is_file())

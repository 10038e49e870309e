"""Core ML schemes through ``coremltools.optimize.coreml``, on the bundle's ML programs.

* ``palettize4`` / ``palettize6`` / ``palettize8``: k-means lookup tables of 2^n entries; per grouped channel
  (``group_size``) when the package targets iOS 18 / macOS 15 or later, per tensor before that (what
  the format allows); weights below coremltools' 2048-element threshold stay float.
* ``linear8``: linear symmetric INT8 weights, per channel.
* ``w8a8``: INT8 weights and activations; the activation ranges come from running the model on the
  captured inputs, which Core ML can do on macOS only — elsewhere it is refused with that reason.

A graph split into chunks for the Neural Engine is compressed chunk by chunk (each chunk's own lookup tables),
every chunk written under its own name.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..._lazy import require
from ...errors import EdgeLDMError
from ...runtimes.backends.coreml_session import chunk_packages
from .schemes import QuantOptions, register_scheme


def _load(src: Path):
    ct = require("coremltools")
    return ct.models.MLModel(str(src), skip_model_load=sys.platform != "darwin")


def _save(model, src: Path, dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = dst / src.name
    if out.exists():
        shutil.rmtree(out)
    # the exporter's descriptions and io_adaptations metadata travel with the spec
    model.save(str(out))
    return sorted(p for p in out.rglob("*") if p.is_file())


def _per_chunk(compress, src: Path, dst: Path) -> list[Path]:
    """``compress(MLModel) -> MLModel`` applied to the graph, or to each of its chunks in turn (one at a time in
    memory); the files written, the first chunk's first."""
    return [f for part in chunk_packages(src) for f in _save(compress(_load(part)), part, dst)]


def _spec_at_least_ios18(model) -> bool:
    # ML program spec version 9 = iOS 18 / macOS 15
    return model.get_spec().specificationVersion >= 9


def _palettize(nbits: int):
    def run(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
        from coremltools.optimize.coreml import OpPalettizerConfig, OptimizationConfig, palettize_weights

        def compress(model):
            if _spec_at_least_ios18(model):
                op = OpPalettizerConfig(mode="kmeans", nbits=nbits, granularity="per_grouped_channel",
                                        group_size=options.group_size)
            else:
                op = OpPalettizerConfig(mode="kmeans", nbits=nbits, granularity="per_tensor")
            return palettize_weights(model, OptimizationConfig(global_config=op))

        return _per_chunk(compress, src, dst)

    return run


for _bits in (4, 6, 8):
    register_scheme(f"palettize{_bits}", "coreml", f"{_bits}-bit k-means palettized weights",
                    supports_exclude=False)(_palettize(_bits))


@register_scheme("linear8", "coreml", "linear symmetric INT8 weights, per channel", supports_exclude=False)
def linear8(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    op = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    return _per_chunk(lambda model: linear_quantize_weights(model, OptimizationConfig(global_config=op)), src, dst)


@register_scheme("w8a8", "coreml", "INT8 weights + calibrated INT8 activations (calibration needs macOS)",
                 calibrated=True, supports_exclude=False)
def w8a8(src: Path, dst: Path, component: str, options: QuantOptions, calib=None) -> list[Path]:
    if len(chunk_packages(src)) > 1:  # the captured inputs are the component's, not a later chunk's
        raise EdgeLDMError(f"Core ML w8a8 calibrates a whole graph; this {component} is in chunks",
                           hint="use --scheme palettize6 / linear8 (applied per chunk), or export with --chunks 1")
    if sys.platform != "darwin":
        raise EdgeLDMError("Core ML w8a8 calibrates activations by running the model, which Core ML does on "
                           "macOS only", hint="run this on a Mac, or use --scheme linear8 / palettize6 here")
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_activations,
        linear_quantize_weights,
    )

    from ...calibration.capture import coreml_samples

    model = _load(src)
    samples = coreml_samples(calib, component, limit=options.calib_samples)
    act = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric"))
    model = linear_quantize_activations(model, act, samples)
    weights = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
    return _save(linear_quantize_weights(model, weights), src, dst)

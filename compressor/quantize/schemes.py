"""The quantization schemes: one registry, one thin module per backend fills it.

A scheme quantizes one exported graph of one component (``quantize(src_graph, dst_folder, component,
options, calib)`` -> the files it wrote). Backend-neutral code (which components, validation, the
sensitivity search, the bundle) lives in :mod:`.bundle`, :mod:`.validate` and :mod:`.sensitivity`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...errors import EdgeLDMError


@dataclass(frozen=True)
class QuantOptions:
    """Knobs the schemes read (each uses the ones that concern it)."""

    group_size: int = 64  # INT4 weight groups (OpenVINO), grouped-channel palettes (Core ML)
    smooth_quant_alpha: float = 0.95  # w8a8 on OpenVINO: SmoothQuant for MatMuls; < 0 disables it
    calibrate_method: str = "minmax"  # ONNX Runtime static: minmax | percentile | entropy
    per_channel: bool = True  # ONNX Runtime weights
    op_types: tuple[str, ...] | None = None  # ONNX Runtime: op types to quantize (None: the scheme's default)
    calib_samples: int = 64  # component calls used for calibration (the rest validates)
    exclude: tuple[str, ...] = ()  # node-name prefixes kept in float (the sensitivity search fills this)


@dataclass(frozen=True)
class Scheme:
    name: str
    backend: str
    summary: str
    components: tuple[str, ...]  # quantized by default; the others stay as exported
    calibrated: bool  # needs captured activations
    quantize: Callable = field(repr=False, compare=False)
    supports_exclude: bool = True


SCHEMES: dict[str, Scheme] = {}


#: attribute names of the exporters' wrapper modules (exporters/torch_modules.py), first in every node path
WRAPPERS = ("unet", "text_encoder", "vae", "decoder")


def module_path(node_name: str) -> str:
    """The component's module path in an exported node name:
    "/unet/down_blocks.0/resnets.1/conv1/Conv" -> "down_blocks.0.resnets.1.conv1".

    torch.onnx names nodes after the module they come from (our wrapper module first); OpenVINO keeps those
    names when converting.
    """
    parts = node_name.strip("/").split("/")[:-1]
    if len(parts) > 1 and parts[0] in WRAPPERS:
        parts = parts[1:]
    return ".".join(parts)


def excluded(node_name: str, prefixes: tuple[str, ...]) -> bool:
    """Is this node inside one of the module prefixes (``down_blocks.1``, ``mid_block``, ...)?"""
    path = module_path(node_name)
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def register_scheme(name: str, backend: str, summary: str, *, components=("text_encoder", "unet"),
                    calibrated: bool = False, supports_exclude: bool = True):
    def add(fn):
        key = f"{backend}:{name}"
        if key in SCHEMES:
            raise ValueError(f"scheme {key} registered twice")
        SCHEMES[key] = Scheme(name, backend, summary, tuple(components), calibrated, fn, supports_exclude)
        return fn

    return add


def _load_backend(backend: str) -> None:
    from importlib import import_module

    module = {"onnx": "onnxruntime_schemes", "openvino": "openvino_schemes", "coreml": "coreml_schemes"}.get(backend)
    if module is None:
        raise EdgeLDMError(f"unknown backend {backend!r}", hint="one of onnx, openvino, coreml")
    import_module(f"{__package__}.{module}")


def get_scheme(backend: str, name: str) -> Scheme:
    _load_backend(backend)
    key = f"{backend}:{name}"
    if key not in SCHEMES:
        names = sorted(s.name for s in SCHEMES.values() if s.backend == backend)
        raise EdgeLDMError(f"no scheme {name!r} for {backend}", hint=f"{backend} schemes: {', '.join(names)}")
    return SCHEMES[key]


def list_schemes() -> list[Scheme]:
    for b in ("onnx", "openvino", "coreml"):
        _load_backend(b)
    return sorted(SCHEMES.values(), key=lambda s: (s.backend, s.name))

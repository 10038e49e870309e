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
    # backend session settings its graphs want at load time, recorded per component in the manifest (the
    # runtime applies them): ONNX Runtime folds weight-only DequantizeLinear nodes into fp32 weights at load
    # only when told to, else it dequantizes every call
    session_config: tuple[tuple[str, str], ...] = ()

    @property
    def default_min_psnr(self) -> float:
        """The output-PSNR floor (dB, vs fp32) a component quantized with this scheme must meet unless told
        otherwise. Measured on tiny (README): activation schemes cost 30-45 joint-accuracy points at the ~38 dB
        they reach unmixed and are within 2 points at 52 dB (with blocks kept float by sensitivity); weight-only
        schemes reach 50-60 dB, so their floor is a guard against a broken graph."""
        return ACTIVATION_MIN_PSNR_DB if self.calibrated else WEIGHT_ONLY_MIN_PSNR_DB


#: ONNX Runtime's range estimators for static QDQ
CALIBRATE_METHODS = ("minmax", "percentile", "entropy")
ACTIVATION_MIN_PSNR_DB = 52.0
WEIGHT_ONLY_MIN_PSNR_DB = 45.0
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
                    calibrated: bool = False, supports_exclude: bool = True, session_config=()):
    def add(fn):
        key = f"{backend}:{name}"
        if key in SCHEMES:
            raise ValueError(f"scheme {key} registered twice")
        SCHEMES[key] = Scheme(name, backend, summary, tuple(components), calibrated, fn, supports_exclude,
                              tuple(session_config))
        return fn

    return add


def _load_backend(backend: str) -> None:
    """Import the module that registers ``backend``'s schemes (named by its ``edgeldm.backends`` entry)."""
    from ...backends import BACKENDS, load, with_schemes

    if backend not in BACKENDS or not BACKENDS[backend].schemes:
        raise EdgeLDMError(f"no quantization schemes for backend {backend!r}", hint=f"one of {', '.join(with_schemes())}")
    load(BACKENDS[backend].schemes)


def get_scheme(backend: str, name: str) -> Scheme:
    _load_backend(backend)
    key = f"{backend}:{name}"
    if key not in SCHEMES:
        names = sorted(s.name for s in SCHEMES.values() if s.backend == backend)
        raise EdgeLDMError(f"no scheme {name!r} for {backend}", hint=f"{backend} schemes: {', '.join(names)}")
    return SCHEMES[key]


def component_schemes(backend: str, spec: str, components: tuple[str, ...] | None = None,
                      present=()) -> dict[str, Scheme]:
    """Which scheme quantizes which component.

    ``spec`` is one scheme name (for ``components``, or the scheme's default components) or a per-component
    mix ``"text_encoder=int4-weights,unet=int8-weights"`` — each graph gets the scheme its size and
    sensitivity call for (a token embedding takes 4 bits, VAE activations take none). ``text_encoder`` — a
    scheme's default or a mix's item — stands for every text encoder among the bundle's ``present`` components
    that is not named itself (SDXL's ``text_encoder_2``, its largest: a recipe written for SD 1.5 must not
    leave it in fp32 on SDXL).
    """
    if "=" not in spec:
        scheme = get_scheme(backend, spec.strip())
        chosen = list(components or scheme.components)
        if not components and "text_encoder" in chosen:
            chosen += [c for c in present if c.startswith("text_encoder") and c not in chosen]
        return {c: scheme for c in chosen}
    if components:
        raise EdgeLDMError(f"--scheme {spec!r} names its components; --components cannot also be given")
    mix: dict[str, Scheme] = {}
    for item in filter(None, (i.strip() for i in spec.split(","))):
        comp, sep, name = (x.strip() for x in item.partition("="))
        if not sep or not comp or not name:
            raise EdgeLDMError(f"bad --scheme item {item!r}", hint="write COMPONENT=SCHEME, comma-separated, "
                               "e.g. text_encoder=int4-weights,unet=int8-weights")
        if comp in mix:
            raise EdgeLDMError(f"--scheme names {comp} twice")
        mix[comp] = get_scheme(backend, name)
    if "text_encoder" in mix:
        mix.update({c: mix["text_encoder"] for c in present if c.startswith("text_encoder") and c not in mix})
    return mix


def list_schemes() -> list[Scheme]:
    from ...backends import with_schemes

    for b in with_schemes():
        _load_backend(b)
    return sorted(SCHEMES.values(), key=lambda s: (s.backend, s.name))

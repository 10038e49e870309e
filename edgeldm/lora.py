"""LoRA adapters baked into a model: ``FILE[:SCALE]``, in the diffusers / PEFT format (``unet.*``,
``text_encoder.*``) or kohya's (``lora_unet_*``, ``lora_te_*``), fused into the UNet and text encoder by
diffusers' own loaders (``load_lora_weights`` + ``fuse_lora``), one adapter at a time so each keeps its scale.

The file's header is checked first (format, family, cross-attention width), so a wrong adapter gets a message
naming what it is rather than a PEFT stack trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError, CheckpointNotFoundError, EdgeLDMError

logger = logging.getLogger("edgeldm")

_KOHYA = ("lora_unet_", "lora_te_", "lora_te1_")
_DIFFUSERS = ("unet.", "text_encoder.")
_SDXL = ("lora_te2_", "text_encoder_2.")  # a second text encoder: an SDXL adapter


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "LoraSpec":
        """``FILE`` or ``FILE:SCALE`` (the last colon; a path that exists as written wins)."""
        head, sep, tail = str(text).rpartition(":")
        if sep and not Path(text).exists() and "/" not in tail and "\\" not in tail:
            try:
                return cls(Path(head).expanduser(), float(tail))
            except ValueError:
                raise EdgeLDMError(f"LoRA scale {tail!r} in {text!r} is not a number",
                                   hint="write FILE:SCALE, e.g. style.safetensors:0.8") from None
        return cls(Path(text).expanduser())


def check_lora_text(text: str) -> str:
    """Option parser: refuse a bad ``FILE:SCALE`` when the option is read (a usage error), keep the text."""
    import argparse

    try:
        LoraSpec.parse(text)
    except EdgeLDMError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def read_lora(spec: LoraSpec) -> tuple[dict[str, tuple[int, ...]], str]:
    """(tensor shapes, format) of an adapter file, from its header only: a missing, unreadable or foreign file
    is refused before the model loads."""
    shapes = _read_header(spec.path)
    return shapes, lora_format(spec.path, shapes)


def _read_header(path: Path) -> dict[str, tuple[int, ...]]:
    from .single_file import read_shapes

    if not path.is_file():
        raise CheckpointNotFoundError(f"LoRA adapter {path} does not exist")
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"LoRA adapter {path}: only .safetensors adapters load (no pickles)")
    try:
        return read_shapes(path)
    except CheckpointError as exc:  # name what the file was meant to be
        raise type(exc)(f"LoRA adapter {exc.message}", hint=exc.hint) from None


def lora_format(path: Path, shapes: dict) -> str:
    if any(k.startswith(_KOHYA + ("lora_te2_",)) for k in shapes):
        return "kohya"
    if any(k.startswith(_DIFFUSERS + ("text_encoder_2.",)) and "lora" in k for k in shapes):
        return "diffusers"
    raise CheckpointError(f"{path}: its keys match no LoRA format (e.g. {', '.join(sorted(shapes)[:3]) or 'none'})",
                          hint="LoRA files in the diffusers / PEFT format (unet.*, text_encoder.*) or kohya's "
                               "(lora_unet_*, lora_te_*) load")


def _check_family(pipe, path: Path, shapes: dict) -> None:
    if any(k.startswith(_SDXL) for k in shapes) and getattr(pipe, "text_encoder_2", None) is None:
        raise CheckpointError(f"{path} is an SDXL LoRA (it has weights for a second text encoder) and this model "
                              "has one text encoder", hint="use an adapter trained for this model's family")
    width = pipe.unet.config.cross_attention_dim
    for key, shape in shapes.items():  # the down-projection of a cross-attention key reads the text width
        if "attn2" in key and ("to_k" in key) and ("lora_down" in key or "lora_A" in key or "lora.down" in key):
            if len(shape) == 2 and shape[1] != width:
                family = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}.get(shape[1], "another family")
                raise CheckpointError(f"{path} was made for a model whose text embeddings are {shape[1]} wide "
                                      f"({family}); this model's are {width}",
                                      hint="use an adapter trained for this model's family")
            return


def fuse_loras(pipe, specs) -> list[dict]:
    """Fuse each adapter into ``pipe`` (in place); returns what the lineage records of each."""
    from .manifest import sha256_file

    if not specs:
        return []
    try:
        import peft  # noqa: F401  (diffusers' LoRA loading goes through peft)
    except ImportError:
        raise CheckpointError("fusing LoRA adapters needs peft", hint="pip install 'edgeldm[compress]'") from None
    records = []
    for i, spec in enumerate(specs):
        shapes, fmt = read_lora(spec)
        _check_family(pipe, spec.path, shapes)
        name = f"edgeldm_lora_{i}"
        try:
            pipe.load_lora_weights(str(spec.path.parent), weight_name=spec.path.name, adapter_name=name)
        except ValueError as exc:  # PEFT: "Target modules {...} not found in the base model"
            raise CheckpointError(f"{spec.path}: its keys match no module of the model ({str(exc)[:200]}; "
                                  f"file keys e.g. {', '.join(sorted(shapes)[:3])})",
                                  hint="the adapter must be trained for this model's architecture") from None
        except (RuntimeError, KeyError, OSError) as exc:
            raise CheckpointError(f"{spec.path} does not fit this model: {str(exc).splitlines()[0][:300]}",
                                  hint="the adapter must be trained for this model's architecture") from None
        counts = {c: sum(1 for _, m in getattr(pipe, c).named_modules() if hasattr(m, "lora_A"))
                  for c in ("unet", "text_encoder", "text_encoder_2") if getattr(pipe, c, None) is not None}
        if not any(counts.values()):
            pipe.unload_lora_weights()
            raise CheckpointError(f"{spec.path}: none of its keys match a module of the model "
                                  f"(e.g. {', '.join(sorted(shapes)[:3])})",
                                  hint="the adapter must be trained for this model's architecture")
        pipe.fuse_lora(components=[c for c, n in counts.items() if n], lora_scale=spec.scale, adapter_names=[name])
        pipe.unload_lora_weights()  # plain modules again; the adapter's effect stays in the weights
        logger.info("LoRA %s (%s format, scale %g) fused: %s", spec.path.name, fmt, spec.scale,
                    ", ".join(f"{n} {c} layers" for c, n in counts.items() if n))
        records.append({"name": spec.path.name, "sha256": sha256_file(spec.path), "scale": spec.scale,
                        "format": fmt, "layers": counts})
    return records

"""``edgeldm.export``: a model to a bundle of ONNX / OpenVINO / Core ML graphs with a manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..backends import BACKENDS
from ..exporters.bundle import PRECISIONS, ExportConfig
from ..exporters.coreml_export import ATTENTION
from ..options import check_positive, option, resolve, split_list, to_config
from .common import StageResult, check_output, weights_bytes

logger = logging.getLogger("edgeldm")


@dataclass(frozen=True)
class ExportOptions:
    backend: tuple[str, ...] = option(ExportConfig.backends, "comma-separated backends: " + ", ".join(
        f"{b.name} (needs --static)" if b.needs_static else b.name for b in BACKENDS.values() if b.exporter),
        parse=split_list)
    precision: str = option(ExportConfig.precision, "graph precision; fp16 keeps the VAE in fp32 unless --fp16-vae",
                            choices=PRECISIONS)
    fp16_vae: bool = option(ExportConfig.fp16_vae_decoder, "also export the VAE in fp16 (risk: black images)")
    height: int | None = option(ExportConfig.height, "image height (default: the model's native size)")
    width: int | None = option(ExportConfig.width, "image width (default: the model's native size)")
    static: bool = option(ExportConfig.static, "fixed shapes (batch 2 UNet for guidance; what NPUs need)")
    vae_encoder: bool = option(ExportConfig.vae_encoder, "also export the VAE encoder (image-to-image)")
    attention_slice: int | None = option(ExportConfig.attention_slice,
                                         "compute the UNet's attention N heads at a time (1: one head; the "
                                         "batch stays dynamic): the attention matrices, the largest "
                                         "activations at 512 px and up, then never all exist at once (memory: "
                                         "docs/memory.md)", metavar="N")
    coreml_target: str = option(ExportConfig.coreml_target,
                                "Core ML minimum deployment target, e.g. iOS17, iOS18, macOS15 (default iOS16: the "
                                "oldest with ML programs); iOS18 / macOS15 let `quantize --scheme palettize*` use "
                                "per-grouped-channel tables (--group-size)", metavar="TARGET")
    coreml_attention: str = option(ExportConfig.coreml_attention,
                                   "Core ML attention: original (diffusers' own; GPU) or split_einsum (one head at "
                                   "a time as einsums, the form Apple converts for the Neural Engine)",
                                   choices=ATTENTION)
    onnx_fusion: bool = option(ExportConfig.onnx_fusion,
                               "run ONNX Runtime's transformer optimizer on the fp32 ONNX graphs (fused Attention, "
                               "MultiHeadAttention, SkipLayerNormalization, Gelu: ONNX Runtime's contrib ops, so "
                               "ONNX Runtime only; OpenVINO converts from the plain graph; not quantizable)")
    chunks: int | None = option(ExportConfig.coreml_chunks,
                                "Core ML: split the UNet into N packages run one after the other (default: as many "
                                "as keep each under the Neural Engine's 1 GB, for any component; 1: never)",
                                metavar="N")

    def config(self) -> ExportConfig:
        check_positive(self, "height", "width", "chunks")
        return to_config(ExportConfig, self, backends=tuple(self.backend), fp16_vae_decoder=self.fp16_vae,
                         coreml_chunks=self.chunks)


def export(model: str | Path, output: str | Path, options: ExportOptions | None = None, *, overwrite: bool = False,
           allow_pickle: bool = False, **kwargs) -> StageResult:
    """Export ``model`` (a diffusers folder or zoo name) into the bundle folder ``output``.

    Every graph is validated against torch on shapes other than the export shapes; a failure writes nothing.
    """
    from ..exporters.bundle import export_bundle

    options = resolve(ExportOptions, options, kwargs)
    config = options.config()
    check_output(output, overwrite, inputs=(str(model),))
    manifest = export_bundle(str(model), output, config, overwrite=overwrite, allow_pickle=allow_pickle)
    for comp, entry in manifest["components"].items():
        for backend, b in entry["backends"].items():
            validation = b["validation"]
            if validation.get("skipped"):
                logger.info("  %-13s %-9s %s  validation skipped: %s", comp, backend, entry["precision"],
                            validation["skipped"])
                continue
            logger.info("  %-13s %-9s %s  validation PSNR >= %.1f dB", comp, backend, entry["precision"],
                        _worst_psnr({comp: entry}))
    logger.info("wrote bundle %s", output)
    return StageResult("export", Path(output), bundle_metrics(output, manifest), manifest)


def _worst_psnr(components: dict) -> float:
    worst = float("inf")
    for entry in components.values():
        for b in entry["backends"].values():
            for o in b["validation"].get("outputs", {}).values():
                if isinstance(o.get("psnr_db"), (int, float)):
                    worst = min(worst, o["psnr_db"])
    return worst


def bundle_metrics(bundle, manifest: dict | None = None) -> dict:
    """What an export gate reads: size and the worst validation PSNR of any graph output against torch."""
    from ..manifest import load_manifest

    manifest = manifest or load_manifest(Path(bundle))
    return {"size_bytes": weights_bytes(bundle), "validation_psnr_min": _worst_psnr(manifest["components"])}


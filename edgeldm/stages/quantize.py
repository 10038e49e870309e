"""``edgeldm.quantize``: a bundle's graphs quantized for one backend, calibrated on its own sampler trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..arguments import PSNR_FLOOR
from ..calibration.capture import CaptureConfig
from ..compressor.quantize.bundle import QuantizeConfig
from ..backends import with_schemes
from ..compressor.quantize.schemes import ACTIVATION_MIN_PSNR_DB, CALIBRATE_METHODS, WEIGHT_ONLY_MIN_PSNR_DB, \
    QuantOptions
from ..errors import EdgeLDMError
from ..options import check_positive, option, resolve, split_list
from .common import StageResult, check_output, weights_bytes


@dataclass(frozen=True)
class QuantizeOptions:
    backend: str | None = option(None, "the backend whose graphs are quantized", choices=with_schemes)
    scheme: str | None = option(None, "see the list below; or one per component, e.g. "
                                      "text_encoder=int4-weights,unet=int8-weights,vae_decoder=int8-weights")
    components: tuple[str, ...] | None = option(None, "comma-separated components to quantize (default: the "
                                                      "scheme's)", parse=split_list)
    calib_prompts: str | None = option(CaptureConfig.prompts_file, "calibration prompts, one per line",
                                       metavar="FILE")
    calib_samples: int = option(CaptureConfig.samples, "images whose component inputs are captured")
    calib_steps: int | None = option(CaptureConfig.steps, "sampler steps during capture (default: the bundle's, "
                                                          "e.g. 4 for an LCM)")
    calib_dir: str | None = option(QuantizeConfig.calibration_dir, "reuse a capture instead of making one")
    min_psnr: float | None = option(
        QuantizeConfig.min_psnr, "floor on each quantized component's output PSNR vs its fp32 graph on held-out "
                                 "captured inputs; below it quantize exits 1 and writes nothing (default: "
                                 f"{ACTIVATION_MIN_PSNR_DB:g} for schemes that quantize activations - within 2 "
                                 f"accuracy points on tiny, docs/quantize.md -, {WEIGHT_ONLY_MIN_PSNR_DB:g} for "
                                 "weight-only ones)", parse=PSNR_FLOOR, metavar="DB")
    sensitivity: bool | None = option(
        QuantizeConfig.sensitivity, "below the floor, keep the most sensitive blocks (UNet, text-encoder layers, "
                                    "VAE-decoder blocks) in float until it is met (default: on for schemes that "
                                    "quantize activations)")
    keep_failed: bool = option(QuantizeConfig.keep_failed, "below the floor, still write the bundle (its manifest "
                                                           "marks the failure) and exit 1")
    verify: bool = option(True, "BUNDLE: skip the SHA-256 check of the bundle's files against its manifest (paths "
                                "must still stay inside the bundle)")
    group_size: int = option(QuantOptions.group_size, "INT4 / palettization group size")
    smooth_quant_alpha: float = option(QuantOptions.smooth_quant_alpha,
                                       "SmoothQuant alpha of openvino w8a8; negative disables")
    calibrate_method: str = option(QuantOptions.calibrate_method, "onnx qdq-static range estimation",
                                   choices=CALIBRATE_METHODS)
    op_types: tuple[str, ...] | None = option(QuantOptions.op_types, "onnx: comma-separated op types to quantize",
                                              parse=split_list)
    per_tensor: bool = option(not QuantOptions.per_channel, "onnx: per-tensor instead of per-channel weights")
    image_prompts: int = option(QuantizeConfig.image_prompts, "prompts for the image comparison with the fp32 "
                                                              "bundle; 0: skip")
    compact: bool = option(QuantizeConfig.compact,
                           "onnx: slim the quantized graphs for shipping - shape arithmetic folded (onnxslim), short "
                           "internal names, no shape annotations; same outputs (checked), 0.2-0.4 MB less on tiny; "
                           "graph input/output names stay")

    def config(self) -> QuantizeConfig:
        if self.backend is None or self.scheme is None:
            raise EdgeLDMError("quantize needs a backend and a scheme", hint="e.g. backend='onnx', scheme='dynamic'")
        check_positive(self, "calib_samples", "calib_steps", "group_size")
        if self.image_prompts < 0:
            raise EdgeLDMError(f"--image-prompts must be >= 0 (0 skips the image comparison), got {self.image_prompts}")
        options = QuantOptions(group_size=self.group_size, smooth_quant_alpha=self.smooth_quant_alpha,
                               calibrate_method=self.calibrate_method, per_channel=not self.per_tensor,
                               op_types=self.op_types or None)
        return QuantizeConfig(backend=self.backend, scheme=self.scheme, components=self.components or None,
                              options=options, calibration=CaptureConfig(samples=self.calib_samples,
                                                                         steps=self.calib_steps,
                                                                         prompts_file=self.calib_prompts),
                              calibration_dir=self.calib_dir, min_psnr=self.min_psnr, sensitivity=self.sensitivity,
                              keep_failed=self.keep_failed, image_prompts=self.image_prompts, compact=self.compact)


def quantize(bundle: str | Path, output: str | Path, options: QuantizeOptions | None = None, *,
             overwrite: bool = False, **kwargs) -> StageResult:
    """Quantize ``bundle``'s graphs for ``options.backend`` into a new bundle at ``output`` (that backend only).

    Each quantized graph is validated against its fp32 graph on held-out captured inputs (gated by
    ``min_psnr``) and the images of both bundles are compared; every number goes into the new manifest.
    """
    from ..compressor.quantize import quantize_bundle

    options = resolve(QuantizeOptions, options, kwargs)
    config = options.config()
    check_output(output, overwrite, inputs=(str(bundle),))
    manifest = quantize_bundle(str(bundle), output, config, overwrite=overwrite, verify=options.verify)
    return StageResult("quantize", Path(output), quantized_metrics(output, manifest), manifest)


def quantized_metrics(bundle, manifest: dict | None = None) -> dict:
    """What a quantize gate reads: size, the worst component output PSNR and the mean image PSNR vs fp32."""
    from ..manifest import load_manifest

    m = manifest or load_manifest(Path(bundle))
    q = m["quantization"]
    psnrs = [m["components"][c]["backends"][q["backend"]]["quantization"]["parity"].get("psnr_db")
             for c in q["components"]]
    psnrs = [p for p in psnrs if isinstance(p, (int, float))]
    return {"size_bytes": weights_bytes(bundle), "output_psnr_min": min(psnrs) if psnrs else float("nan"),
            "image_psnr_mean": q["image_parity"].get("psnr_db_mean", float("nan"))}

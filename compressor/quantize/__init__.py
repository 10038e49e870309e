"""Quantization of exported bundles, one thin module per backend: NNCF on OpenVINO IR, ONNX Runtime QDQ /
dynamic, coremltools palettization / linear quantization — calibrated on the inputs the sampler really
feeds each component, validated against the fp32 graphs, optionally mixed-precision by block sensitivity."""

from .bundle import QuantizationQualityError, QuantizeConfig, quantize_bundle
from .schemes import QuantOptions, get_scheme, list_schemes

__all__ = ["QuantOptions", "QuantizeConfig", "QuantizationQualityError", "get_scheme", "list_schemes",
           "quantize_bundle"]

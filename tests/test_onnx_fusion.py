"""--onnx-fusion: ONNX Runtime's transformer optimizer fuses the bundle's ONNX graphs (Attention,
MultiHeadAttention, SkipLayerNormalization ...) with CPU kernels only; the fused graphs are validated against torch,
give the plain bundle's image, and are refused where only plain graphs work (fp16, quantizers)."""

from pathlib import Path

import numpy as np
import pytest

from edgeldm.errors import EdgeLDMError
from edgeldm.exporters.bundle import ExportConfig, export_bundle
from edgeldm.manifest import load_manifest, verify_files

PROMPT = "a small red circle in the top left on a white background"


@pytest.fixture(scope="module")
def fused(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fused") / "tiny-random"
    export_bundle("tiny-random", path, ExportConfig(backends=("onnx", "openvino"), onnx_fusion=True))
    return path


def _ops(graph: Path) -> dict[str, int]:
    import collections

    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return collections.Counter(f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in model.graph.node)


def test_the_unet_graph_is_fused_and_still_matches_torch(fused, tiny_random_pipe):
    from diffusers.models.attention_processor import Attention

    manifest = load_manifest(fused)
    verify_files(fused, manifest)
    unet = manifest["components"]["unet"]["backends"]["onnx"]
    assert unet["fusion"]["model_type"] == "unet" and unet["validation"]["passed"] is True
    layers = [m for m in tiny_random_pipe.unet.modules() if isinstance(m, Attention)]
    ops = _ops(fused / "unet" / "model.onnx")
    # every attention layer fused: self-attention into Attention, cross-attention into MultiHeadAttention
    assert ops["com.microsoft:Attention"] + ops["com.microsoft:MultiHeadAttention"] == len(layers)
    assert ops.get("Softmax", 0) == 0 and ops["com.microsoft:SkipLayerNormalization"] > 0
    assert unet["fusion"]["ops"]["Attention"] == ops["com.microsoft:Attention"]
    # no GPU-only contrib op (the graph runs on the CPU EP)
    assert not {"com.microsoft:GroupNorm", "com.microsoft:NhwcConv", "com.microsoft:BiasSplitGelu"} & set(ops)
    # OpenVINO converted the plain graph (it has no reader for ONNX Runtime's contrib ops)
    assert "fusion" not in manifest["components"]["unet"]["backends"]["openvino"]
    assert manifest["components"]["unet"]["backends"]["openvino"]["validation"]["passed"] is True


def test_the_fused_graph_holds_the_weights_and_nothing_more(fused, tiny_random_bundle):
    # diffusers' AttnProcessor would export its baddbmm's empty input as a tokens^2 constant per layer (6x here)
    size = lambda b: sum(f.stat().st_size for f in (b / "unet").glob("model.onnx*"))  # noqa: E731
    assert size(fused) < 1.1 * size(tiny_random_bundle)


def test_the_fused_bundle_gives_the_plain_bundles_image(fused, tiny_random_bundle):
    from edgeldm.exporters.validation import tensor_psnr
    from edgeldm.runtimes.text2image import Text2Image

    plain = np.asarray(Text2Image(tiny_random_bundle, backend="onnx")(PROMPT, steps=3, seed=5), np.float32)
    image = np.asarray(Text2Image(fused, backend="onnx")(PROMPT, steps=3, seed=5), np.float32)
    assert image.shape == plain.shape and plain.std() > 0
    assert tensor_psnr(plain, image) >= 40.0


def test_fusion_is_refused_where_it_cannot_apply(fused, tmp_path):
    from edgeldm.compressor.quantize import QuantizeConfig, quantize_bundle

    with pytest.raises(EdgeLDMError, match="fuses fp32 ONNX graphs"):
        ExportConfig(backends=("onnx",), precision="fp16", onnx_fusion=True).check()
    with pytest.raises(EdgeLDMError, match="fuses fp32 ONNX graphs"):
        ExportConfig(backends=("openvino",), onnx_fusion=True).check()
    with pytest.raises(EdgeLDMError, match="fused for ONNX Runtime") as info:
        quantize_bundle(fused, tmp_path / "q", QuantizeConfig(backend="onnx", scheme="int8-weights"))
    assert "without --onnx-fusion" in info.value.hint and not (tmp_path / "q").exists()


def test_a_static_head_sliced_export_holds_no_attention_sized_constant(tiny_random_pipe, tmp_path):
    """--attention-slice --static: the attention scores are MatMul - Mul, not diffusers' baddbmm on an empty
    tensor, which a static export folds into a batch x heads x tokens^2 constant per slice (6x the file here)."""
    from edgeldm.exporters.attention_slicing import HeadSlicedAttnProcessor, swapped_attention
    from edgeldm.exporters.bundle import component_ios
    from edgeldm.exporters.onnx_export import export_onnx
    from edgeldm.exporters.torch_modules import component_module

    io = component_ios(tiny_random_pipe, 64, 64)["unet"].static()
    module = component_module(tiny_random_pipe, "unet")
    plain = export_onnx(module, io, tmp_path / "plain")
    with swapped_attention(module, HeadSlicedAttnProcessor(1)):
        sliced = export_onnx(module, io, tmp_path / "sliced")
    size = lambda files: sum(f.stat().st_size for f in files)  # noqa: E731
    assert size(sliced) < 1.2 * size(plain)

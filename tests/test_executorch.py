"""ExecuTorch bundles (`--backend executorch`, the `executorch` extra): `.pte` programs lowered to XNNPACK, run here
through ExecuTorch's Python runtime, validated against torch, giving the ONNX image for a seed, benched."""

import numpy as np
import pytest

import edgeldm
from edgeldm.exporters.bundle import ExportConfig, export_bundle
from edgeldm.manifest import load_manifest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # lowering takes about a minute even for tiny-random: one bundle for the module
    out = tmp_path_factory.mktemp("executorch") / "b"
    export_bundle("tiny-random", out, ExportConfig(backends=("onnx", "executorch"), static=True))
    return out


def test_every_component_is_a_program_validated_against_torch(bundle):
    manifest = load_manifest(bundle)
    for comp in ("text_encoder", "unet", "vae_decoder"):
        entry = manifest["components"][comp]["backends"]["executorch"]
        assert list(entry["files"]) == [f"{comp}/model.pte"]
        assert entry["validation"]["passed"]
        assert all(o["max_abs_diff"] < 1e-4 for o in entry["validation"]["outputs"].values())
        # an ExecuTorch program (flatbuffer identifier "ET12" at bytes 4..8), not a torch pickle
        assert (bundle / comp / "model.pte").read_bytes()[4:8].startswith(b"ET")


def test_a_seed_gives_the_onnx_image(bundle):
    from edgeldm.benchmarks.quality import psnr
    from edgeldm.runtimes.text2image import Text2Image

    a = np.asarray(Text2Image(bundle, backend="onnx")("a red circle", steps=3, seed=7))[None]
    b = np.asarray(Text2Image(bundle, backend="executorch")("a red circle", steps=3, seed=7))[None]
    assert float(psnr(a, b)[0]) >= 40.0


def test_bench_times_the_programs(bundle):
    result = edgeldm.bench(f"executorch:{bundle}", repeat=1, warmup=0, quality_prompts=0, steps=2)
    assert result.details["target"]["backend"] == "executorch" and result.metrics["image_latency"] > 0


def test_the_export_without_static_shapes_is_refused(tmp_path):
    from edgeldm.errors import EdgeLDMError

    with pytest.raises(EdgeLDMError, match="executorch backend needs fixed shapes"):
        export_bundle("tiny-random", tmp_path / "x", ExportConfig(backends=("executorch",)))
    assert not (tmp_path / "x").exists()


def test_diffusers_imports_beside_the_torchao_executorch_pins():
    # executorch==1.5.1 pins torchao 0.18, on which diffusers 0.35.2's torchao quantizer fails to import;
    # edgeldm._compat tells diffusers torchao is absent
    import importlib.util

    assert importlib.util.find_spec("torchao") is not None
    from diffusers import UNet2DConditionModel  # noqa: F401
    from diffusers.utils import is_torchao_available

    assert not is_torchao_available()
    import peft.import_utils  # peft 0.17's LoRA dispatch trips over torchao 0.18 the same way

    assert not peft.import_utils.is_torchao_available()


def test_the_pt2e_int8_scheme_quantizes_and_runs(bundle, tmp_path):
    from edgeldm.calibration.capture import CaptureConfig
    from edgeldm.compressor.quantize import QuantizeConfig, quantize_bundle
    from edgeldm.compressor.quantize.schemes import QuantOptions
    from edgeldm.runtimes.text2image import Text2Image

    # the text encoder: lowering a quantized UNet takes ~2.5 min even for tiny-random (the UNet's 0.31x file is
    # in docs/quantize.md); the flow is the same
    out = tmp_path / "q"
    manifest = quantize_bundle(bundle, out, QuantizeConfig(
        backend="executorch", scheme="int8", components=("text_encoder",), min_psnr=20.0, image_prompts=0,
        calibration=CaptureConfig(samples=2, steps=2), options=QuantOptions(calib_samples=4)))
    parity = manifest["components"]["text_encoder"]["backends"]["executorch"]["quantization"]["parity"]
    assert parity["inputs"] >= 1 and parity["psnr_db"] >= 20.0  # against the fp32 program, on held-out calls
    # INT8 Linear weights: smaller, though the fp32 token embedding (49 408 x 32) dominates this file
    fp32, int8 = ((b / "text_encoder" / "model.pte").stat().st_size for b in (bundle, out))
    assert int8 < fp32 - 40_000
    assert Text2Image(out, backend="executorch")("a red circle", steps=2).size == (64, 64)

"""ONNX Runtime Mobile bundles (`--backend ort_mobile`): `.ort` graphs from onnxruntime's converter with the
operator list of a reduced build, validated against torch, running like the `.onnx` graphs, benched."""

import numpy as np
import pytest

import edgeldm
from edgeldm.errors import EdgeLDMError
from edgeldm.exporters.bundle import ExportConfig, export_bundle
from edgeldm.manifest import load_manifest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("ort-mobile") / "b"
    export_bundle("tiny-random", out, ExportConfig(backends=("onnx", "ort_mobile")))
    return out


def test_every_component_has_an_ort_graph_and_its_reduced_build_config(bundle):
    manifest = load_manifest(bundle)
    for comp in ("text_encoder", "unet", "vae_decoder"):
        entry = manifest["components"][comp]["backends"]["ort_mobile"]
        assert set(entry["files"]) == {f"{comp}/model.ort", f"{comp}/model.required_operators_and_types.config"}
        assert entry["validation"]["passed"]  # against torch, like every exported graph
        config = (bundle / comp / "model.required_operators_and_types.config").read_text()
        assert f"# - {comp}/model.ort" in config and "/tmp" not in config  # no path of the machine that built it
        assert "ai.onnx;" in config
    assert "Conv{" in (bundle / "unet" / "model.required_operators_and_types.config").read_text()
    # ORT's flatbuffer format, not a renamed protobuf
    assert (bundle / "unet" / "model.ort").read_bytes()[4:8] == b"ORTM"


def test_the_ort_graphs_give_the_onnx_image(bundle):
    from edgeldm.benchmarks.quality import psnr
    from edgeldm.runtimes.text2image import Text2Image

    onnx, ort = Text2Image(bundle, backend="onnx"), Text2Image(bundle, backend="ort_mobile")
    # the .ort graph holds ONNX Runtime's optimisations already applied (fusions): float order, not arithmetic,
    # may differ from the .onnx graph optimised at load
    la, lb = onnx.latents("a red circle", steps=3, seed=5), ort.latents("a red circle", steps=3, seed=5)
    assert np.abs(la - lb).max() < 1e-3
    a, b = onnx.decode(la)[None], ort.decode(lb)[None]
    assert float(psnr(a, b)[0]) >= 60.0


def test_bench_times_the_ort_graphs(bundle):
    result = edgeldm.bench(f"ort_mobile:{bundle}", repeat=1, warmup=0, quality_prompts=0, steps=2)
    assert result.details["target"]["backend"] == "ort_mobile" and result.metrics["image_latency"] > 0


def test_a_graph_over_2_gb_is_refused_in_one_line(tmp_path):
    from edgeldm.exporters.ort_mobile_export import export_ort_mobile

    src = tmp_path / "unet"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"")
    (src / "model.onnx_data").write_bytes(b"")
    with pytest.raises(EdgeLDMError, match="at most 2 GB") as info:
        export_ort_mobile(src / "model.onnx", tmp_path / "out" / "unet")
    assert "--precision fp16" in info.value.hint
    assert not (tmp_path / "out").exists()

"""Exporters: validated graphs, the manifest, static shapes, fp16, and refusing to overwrite."""


import numpy as np
import pytest

from edgeldm.cli import main
from edgeldm.exporters.bundle import ExportConfig, export_bundle
from edgeldm.exporters.validation import DEFAULT_TOLERANCES, ExportValidationError, Tolerances, compare_outputs
from edgeldm.manifest import load_manifest, sha256_file


def test_manifest_lists_every_graph_with_digest_io_and_validation(tiny_random_bundle):
    manifest = load_manifest(tiny_random_bundle)
    assert manifest["pipeline"] == "StableDiffusionPipeline"
    assert manifest["image"] == {"height": 64, "width": 64, "vae_scale_factor": 2, "size_multiple": 4,
                                 "latent_channels": 4, "scaling_factor": 0.18215, "static": False}
    # what peer loaders open besides graphs and tokenizer is listed too
    assert set(manifest["files"]) == {"model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                                      "unet/config.json", "vae_decoder/config.json"}
    assert manifest["defaults"]["steps"] == 25 and manifest["scheduler"]["class"] == "PNDMScheduler"
    for comp in ("text_encoder", "unet", "vae_decoder"):
        entry = manifest["components"][comp]
        for backend in ("onnx", "openvino"):
            b = entry["backends"][backend]
            for rel, digest in b["files"].items():
                assert sha256_file(tiny_random_bundle / rel) == digest
            assert b["validation"]["passed"]
            # validated on other shapes than exported (batch, spatial)
            shapes = b["validation"]["input_shapes"]
            if comp == "unet":
                assert shapes["sample"] == [1, 4, 34, 34]
            for out in b["validation"]["outputs"].values():
                assert out["max_abs_diff"] < 1e-3
    unet_inputs = {t["name"]: t for t in manifest["components"]["unet"]["io"]["inputs"]}
    assert unet_inputs["sample"]["shape"] == ["batch_size", 4, "latent_height", "latent_width"]
    assert manifest["toolchain"]["edgeldm"] and manifest["source"]["model"] == "tiny-random"


def test_bundle_has_optimum_layout(tiny_random_bundle):
    for rel in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                "tokenizer/tokenizer.json", "text_encoder/model.onnx", "unet/model.onnx", "unet/config.json",
                "vae_decoder/model.onnx", "vae_decoder/config.json", "unet/openvino_model.xml",
                "unet/openvino_model.bin"):
        assert (tiny_random_bundle / rel).is_file(), rel


def test_static_fp16_export(tmp_path):
    manifest = export_bundle("tiny-random", tmp_path / "b", ExportConfig(backends=("onnx",), static=True,
                                                                        precision="fp16"))
    unet = manifest["components"]["unet"]
    assert unet["precision"] == "fp16" and manifest["components"]["vae_decoder"]["precision"] == "fp32"
    assert all(isinstance(d, int) for t in unet["io"]["inputs"] for d in t["shape"])
    import onnx

    graph = onnx.load(str(tmp_path / "b" / "unet" / "model.onnx"))
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 4, 32, 32]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)


def test_validation_reports_every_failing_output_at_once():
    ref = {"a": np.ones((2, 3), np.float32), "b": np.zeros((4,), np.float32), "c": np.ones(3, np.float32)}
    cand = {"a": np.ones((2, 3), np.float32) * 1.5, "b": np.zeros((5,), np.float32), "c": np.ones(3, np.float32)}
    checks = compare_outputs(ref, cand, DEFAULT_TOLERANCES["fp32"])
    failed = {c.name for c in checks if not c.passed}
    assert failed == {"a", "b"}
    from edgeldm.exporters.validation import ValidationReport

    report = ValidationReport("unet", "onnx", "fp32", {}, Tolerances(), checks)
    with pytest.raises(ExportValidationError) as err:
        report.raise_if_failed()
    assert "a: max abs diff 0.5" in str(err.value) and "b: shape (5,)" in str(err.value)


def test_export_that_fails_validation_writes_nothing(tmp_path):
    impossible = Tolerances(max_abs_diff=0.0, min_cosine=1.1, min_psnr_db=1e9)
    config = ExportConfig(backends=("onnx",), tolerances={"vae_decoder": impossible})
    with pytest.raises(ExportValidationError, match="vae_decoder"):
        export_bundle("tiny-random", tmp_path / "b", config)
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []


def test_cli_export_refuses_existing_output_and_bad_backend(tiny_random_bundle, capsys):
    assert main(["export", "tiny-random", "-o", str(tiny_random_bundle)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "tiny-random", "-o", str(tiny_random_bundle) + "x", "--backend", "tensorrt"]) == 1
    assert "unknown backend" in capsys.readouterr().err


def test_export_never_writes_into_its_input(tiny_random_dir):
    from edgeldm.errors import EdgeLDMError

    with pytest.raises(EdgeLDMError, match="never writes into its input"):
        export_bundle(str(tiny_random_dir), tiny_random_dir / "bundle", ExportConfig(backends=("onnx",)))


@pytest.mark.slow
def test_sd15_unet_exports_with_external_data_and_runs(tmp_path):
    """SD v1.5's UNet is 3.4 GB: beyond protobuf's 2 GB, so the weights go to one model.onnx_data file."""
    import onnxruntime as ort
    import torch

    from edgeldm.exporters.dummy_inputs import example_inputs
    from edgeldm.exporters.onnx_export import export_onnx
    from edgeldm.exporters.torch_modules import UNetModule
    from edgeldm.io_spec import unet_io
    from edgeldm.zoo import build_preset

    pipe = build_preset("sd15")
    io = unet_io(pipe.unet.config, latent_height=8, latent_width=8)
    module = UNetModule(pipe.unet).eval()
    files = export_onnx(module, io, tmp_path / "unet")
    assert [f.name for f in files] == ["model.onnx", "model.onnx_data"]
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["model.onnx", "model.onnx_data"]
    assert files[1].stat().st_size > 3 * 2**30 and files[0].stat().st_size < 50 * 2**20
    inputs = example_inputs(io, {"batch_size": 1, "latent_height": 16, "latent_width": 16})
    session = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, inputs)
    with torch.no_grad():
        (ref,) = module(*[torch.from_numpy(inputs[n]) for n in io.input_names])
    assert out.shape == (1, 4, 16, 16)
    assert np.abs(out - ref.numpy()).max() < 1e-3

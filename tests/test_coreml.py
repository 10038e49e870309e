"""Core ML: each component converts (Linux too) with the declared names, fixed shapes, descriptions and
versions; the bundle lists the package's files and says why validation was skipped off macOS; prediction
matches torch on a Mac."""

import json
import sys

import numpy as np
import pytest

pytest.importorskip("coremltools")

from edgeldm import __version__  # noqa: E402
from edgeldm.errors import EdgeLDMError  # noqa: E402
from edgeldm.exporters.bundle import ExportConfig, component_ios, export_bundle  # noqa: E402
from edgeldm.manifest import sha256_file  # noqa: E402

COMPONENTS = ("text_encoder", "unet", "vae_decoder")
on_mac = pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction needs macOS")


@pytest.fixture(scope="module")
def static_ios(tiny_random_pipe):
    return {k: v.static() for k, v in component_ios(tiny_random_pipe, 64, 64).items()}


@pytest.fixture(scope="module")
def packages(tiny_random_pipe, static_ios, tmp_path_factory):
    """Every component converted at fp32 and fp16, once: {(component, precision): package folder}."""
    from edgeldm.exporters.coreml_export import COREML_PACKAGE, export_coreml
    from edgeldm.exporters.torch_modules import component_module

    root = tmp_path_factory.mktemp("coreml")
    out = {}
    for comp in COMPONENTS:
        module = component_module(tiny_random_pipe, comp)
        for precision in ("fp32", "fp16"):
            folder = root / f"{comp}-{precision}"
            files = export_coreml(module, static_ios[comp], folder, precision=precision,
                                  vocab_size=tiny_random_pipe.text_encoder.config.vocab_size)
            assert files and all(f.is_file() and (folder / COREML_PACKAGE) in f.parents for f in files)
            out[comp, precision] = folder / COREML_PACKAGE
    return out


def _spec(package):
    import coremltools as ct

    return ct.models.MLModel(str(package), skip_model_load=True).get_spec()


def _features(features) -> dict:
    return {f.name: (tuple(f.type.multiArrayType.shape), f.type.multiArrayType.dataType) for f in features}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("comp", COMPONENTS)
def test_package_declares_names_fixed_shapes_descriptions_and_versions(packages, static_ios, comp, precision):
    import coremltools as ct
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    io, spec = static_ios[comp], _spec(packages[comp, precision])
    inputs, outputs = _features(spec.description.input), _features(spec.description.output)
    assert list(inputs) == io.input_names and list(outputs) == io.output_names
    for t in io.inputs:
        shape, dtype = inputs[t.name]
        if t.name == "timestep":  # scalar in edgeldm's I/O, (1,) in Core ML (no rank-0 inputs)
            assert t.shape == () and shape == (1,)
        else:
            assert shape == t.shape
        int_input = t.dtype.startswith("int")
        assert dtype == (ArrayFeatureType.INT32 if int_input else ArrayFeatureType.FLOAT32)
    for t in io.outputs:  # float32 at the edges, whatever the compute precision
        assert outputs[t.name] == (t.shape, ArrayFeatureType.FLOAT32)

    description = spec.description
    assert "edgeldm" in description.metadata.shortDescription and precision in description.metadata.shortDescription
    assert all(f.shortDescription for f in (*description.input, *description.output))
    meta = dict(description.metadata.userDefined)
    assert meta["edgeldm_version"] == __version__ and meta["coremltools_version"] == ct.__version__
    assert meta["component"] == comp and meta["precision"] == precision and meta["torch_version"]
    adaptations = json.loads(meta["io_adaptations"])
    expected = {"text_encoder": {"input_ids": {"dtype": ["int64", "int32"]}},
                "unet": {"timestep": {"shape": [[], [1]]}}, "vae_decoder": {}}[comp]
    assert adaptations == expected
    assert spec.WhichOneof("Type") == "mlProgram" and spec.specificationVersion >= 7  # iOS16 / macOS13


@pytest.mark.parametrize("comp", COMPONENTS)
def test_fp16_halves_the_weights(packages, comp):
    size = {p: sum(f.stat().st_size for f in packages[comp, p].rglob("*.bin")) for p in ("fp32", "fp16")}
    assert 0.4 < size["fp16"] / size["fp32"] < 0.6, size


def test_dynamic_io_is_refused_with_a_clear_message(tiny_random_pipe, tmp_path):
    from edgeldm.exporters.coreml_export import export_coreml
    from edgeldm.exporters.torch_modules import component_module

    dynamic = component_ios(tiny_random_pipe, 64, 64)["vae_decoder"]
    with pytest.raises(EdgeLDMError, match="Core ML needs fixed shapes") as err:
        export_coreml(component_module(tiny_random_pipe, "vae_decoder"), dynamic, tmp_path / "x")
    assert "--static" in str(err.value) and not (tmp_path / "x").exists()


def test_non_static_bundle_is_refused_before_any_work(tmp_path, monkeypatch):
    import edgeldm.loading

    monkeypatch.setattr(edgeldm.loading, "load_pipeline", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(EdgeLDMError, match="coreml backend needs fixed shapes") as err:
        export_bundle("tiny-random", tmp_path / "b", ExportConfig(backends=("onnx", "coreml")))
    assert "--static" in str(err.value) and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "darwin", reason="off-macOS behaviour")
def test_session_off_macos_says_why(packages, static_ios):
    from edgeldm.runtimes.backends import open_session

    with pytest.raises(EdgeLDMError, match="Core ML prediction needs macOS; the .mlpackage converts on Linux"):
        open_session("coreml", packages["vae_decoder", "fp32"], static_ios["vae_decoder"])


def test_session_adapts_declared_inputs_to_the_package(packages, static_ios, monkeypatch):
    """Core ML's predict stubbed (it needs macOS): the session feeds int64 ids as int32 and the scalar
    timestep as (1,), as the package declares, and returns the declared float32 outputs."""
    from edgeldm.exporters.dummy_inputs import example_inputs
    from edgeldm.runtimes.backends import open_session

    monkeypatch.setattr(sys, "platform", "darwin")
    cases = (("text_encoder", "input_ids", np.int32, (1, 77)), ("unet", "timestep", np.float32, (1,)))
    for comp, name, dtype, shape in cases:
        io, fed = static_ios[comp], {}

        def predict(feed, io=io, fed=fed):
            fed.update(feed)
            return {t.name: np.full(io.resolve(t), 0.5, np.float16) for t in io.outputs}

        session = open_session("coreml", packages[comp, "fp32"], io)
        session.models[0].predict = predict
        inputs = example_inputs(io)
        out = session(**inputs)
        assert fed[name].dtype == dtype and fed[name].shape == shape
        np.testing.assert_array_equal(fed[name].ravel(), inputs[name].ravel())
        assert {k: (v.dtype, v.shape) for k, v in out.items()} == {t.name: (np.float32, t.shape) for t in io.outputs}


def test_bundle_lists_coreml_files_and_the_validation_state(tiny_random_coreml_bundle):
    bundle = tiny_random_coreml_bundle
    manifest = json.loads((bundle / "edgeldm.json").read_text())
    for comp in COMPONENTS:
        backends = manifest["components"][comp]["backends"]
        assert backends["onnx"]["validation"]["passed"] is True
        coreml = backends["coreml"]
        assert any(rel.startswith(f"{comp}/model.mlpackage/") for rel in coreml["files"])
        for rel, digest in coreml["files"].items():
            assert sha256_file(bundle / rel) == digest
        validation = coreml["validation"]
        if sys.platform == "darwin":
            assert validation["passed"] is True
        else:  # recorded, not faked, and not a failure
            assert validation["passed"] is None and validation["skipped"] == "Core ML prediction needs macOS"
            assert all(o["psnr_db"] is None for o in validation["outputs"].values())


@on_mac
@pytest.mark.parametrize("precision, min_psnr", [("fp32", 60.0), ("fp16", 30.0)])
@pytest.mark.parametrize("comp", COMPONENTS)
def test_prediction_matches_torch(packages, static_ios, tiny_random_pipe, comp, precision, min_psnr):
    import torch

    from edgeldm.exporters.dummy_inputs import example_inputs
    from edgeldm.exporters.torch_modules import component_module
    from edgeldm.exporters.validation import tensor_psnr
    from edgeldm.runtimes.backends import open_session

    io = static_ios[comp]
    inputs = example_inputs(io, seed=3, vocab_size=tiny_random_pipe.text_encoder.config.vocab_size)
    with torch.no_grad():
        ref = component_module(tiny_random_pipe, comp)(*[torch.from_numpy(inputs[n]) for n in io.input_names])
    # CPU_ONLY keeps fp32 packages in fp32 (the Neural Engine computes in fp16)
    units = "CPU_ONLY" if precision == "fp32" else "ALL"
    session = open_session("coreml", packages[comp, precision], io, compute_units=units)
    out = session(**inputs)  # int64 ids and a scalar timestep, as the manifest declares
    for name, expected in zip(io.output_names, ref):
        assert out[name].shape == tuple(expected.shape) and out[name].dtype == np.float32
        psnr = tensor_psnr(expected.numpy(), out[name])
        assert psnr >= min_psnr, f"{comp} {precision} {name}: PSNR {psnr:.1f} dB < {min_psnr} dB"

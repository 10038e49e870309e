"""The bundle as a contract (docs/bundle-format.md): the shipped JSON Schema, the manifest's `generation` section
agreeing with what the runtime does, and the portable seed."""

import copy
import json

import numpy as np
import pytest

from edgeldm.manifest import BundleError, load_manifest, manifest_schema, validate_manifest


def test_the_schema_is_a_valid_draft_2020_12_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(manifest_schema())


def test_a_written_manifest_validates_and_states_the_pipeline(tiny_random_bundle):
    from edgeldm.runtimes.text2image import Text2Image

    manifest = load_manifest(tiny_random_bundle)
    validate_manifest(manifest)
    assert manifest["format_version"] == 4
    g = manifest["generation"]
    t2i = Text2Image(tiny_random_bundle, backend="onnx")
    assert g["text"]["encoder_output"] == "last_hidden_state" and g["text"]["max_length"] == 77
    assert g["guidance"]["rule"] == "classifier-free"
    assert g["guidance"]["batch"] == ["unconditional", "conditional"]
    # the sampler the runtime builds from the bundle is the one the manifest names, with the same parameters
    assert g["sampler"]["name"] == t2i.sampler.name == "pndm"
    assert g["sampler"]["parameters"] == json.loads(json.dumps(t2i.sampler.config.to_dict()))
    assert g["noise"]["generator"] == "philox4x32-10/box-muller/v1"
    assert g["latents"]["scaling_factor"] == manifest["image"]["scaling_factor"]
    assert g["latents"]["inpainting_unet"] is False
    assert list(g["modes"]) == ["text-to-image"] and "encoder" not in g  # no VAE encoder: no image modes


def test_a_bundle_with_an_encoder_states_the_image_modes(encoder_bundle):
    g = load_manifest(encoder_bundle)["generation"]
    assert set(g["modes"]) == {"text-to-image", "image-to-image", "inpainting"}
    assert g["encoder"]["output"] == "latent_parameters"
    assert any("scaling_factor" in line for line in g["modes"]["image-to-image"])


def test_an_lcm_bundle_states_the_embedded_guidance(tiny_random_lcm, tmp_path):
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    _, folder = tiny_random_lcm
    g = export_bundle(str(folder), tmp_path / "b", ExportConfig(backends=("onnx",)))["generation"]
    assert g["guidance"]["rule"] == "embedded" and g["guidance"]["unet_input"] == "timestep_cond"
    assert g["guidance"]["embedding_dim"] == 32 and g["guidance"]["batch"] == ["conditional"]
    assert g["sampler"]["name"] == "lcm" and g["sampler"]["parameters"]["original_inference_steps"] == 50


@pytest.mark.parametrize("break_it, expected", [
    (lambda m: m.pop("generation"), "'generation' is a required property"),
    (lambda m: m.update(format_version=2), "4 was expected"),
    (lambda m: m["components"]["unet"]["backends"]["onnx"]["files"].update({"unet/model.onnx": "abc"}),
     "does not match"),
    (lambda m: m["tokenizer"]["files"].update({"../outside.json": "0" * 64}), "does not match"),
    (lambda m: m["generation"]["guidance"].pop("combine"), "'combine' is a required property"),
    (lambda m: m["generation"]["noise"].update(generator="mt19937"), "is not one of"),
])
def test_a_broken_manifest_fails_the_schema_with_the_reason(tiny_random_bundle, break_it, expected):
    manifest = copy.deepcopy(load_manifest(tiny_random_bundle))
    break_it(manifest)
    with pytest.raises(BundleError, match="breaks the bundle schema") as info:
        validate_manifest(manifest)
    assert expected in str(info.value)


def test_the_default_seed_is_the_portable_stream_on_every_backend(tiny_random_bundle):
    from edgeldm.benchmarks.quality import psnr
    from edgeldm.runtimes.noise import PhiloxNormal
    from edgeldm.runtimes.text2image import Text2Image

    ort = Text2Image(tiny_random_bundle, backend="onnx")
    default = ort.latents("a red circle", steps=3, seed=7)
    np.testing.assert_array_equal(default, ort.latents("a red circle", steps=3, seed=7, noise=PhiloxNormal(7)))
    assert not np.allclose(default, ort.latents("a red circle", steps=3, seed=7, noise="numpy"))
    ov = Text2Image(tiny_random_bundle, backend="openvino")
    a = np.asarray(ort("a red circle", steps=3, seed=7))[None]
    b = np.asarray(ov("a red circle", steps=3, seed=7))[None]
    assert float(psnr(a, b)[0]) >= 40.0


def test_an_unknown_noise_name_is_one_clear_error(tiny_random_bundle):
    from edgeldm.errors import EdgeLDMError
    from edgeldm.runtimes.text2image import Text2Image

    with pytest.raises(EdgeLDMError, match="unknown noise generator 'mt'"):
        Text2Image(tiny_random_bundle, backend="onnx").latents("x", steps=1, noise="mt")

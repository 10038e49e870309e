"""#30 SDXL exported and run: the bundle (two text encoders with every layer's hidden states, the UNet's added
conditions, tokenizer_2) loads in optimum's SDXL pipelines, and the torch-free runtime draws diffusers' SDXL
images — text-to-image with and without a negative prompt, image-to-image and inpainting — from the same draws."""

import json

import numpy as np
import pytest
import torch

from edgeldm.benchmarks.quality import psnr
from edgeldm.runtimes.text2image import Text2Image

PROMPT = "a large blue square in the bottom right on a black background"
STEPS, GUIDANCE, SIZE = 4, 7.5, 64


@pytest.fixture(scope="module")
def xl_pipe():
    from edgeldm.loading import load_pipeline

    return load_pipeline("tiny-random-xl", families=("sd", "sdxl"))


@pytest.fixture(scope="module")
def xl_bundle(tmp_path_factory):
    import edgeldm

    out = tmp_path_factory.mktemp("xl") / "bundle"
    edgeldm.export("tiny-random-xl", out, backend=("onnx", "openvino"), vae_encoder=True)
    return out


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(11).standard_normal((1, 4, SIZE // 2, SIZE // 2)).astype(np.float32)


def _as_uint8(images) -> np.ndarray:
    return np.clip(np.asarray(images[0]) * 255 + 0.5, 0, 255).astype(np.uint8)


def _torch_draws(seed):
    generator = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn(shape, generator=generator).numpy()


def _input_image():
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = np.full((SIZE, SIZE, 3), 255, np.uint8)
    pixels[8:30, 10:34] = (220, 30, 30)
    return Image.fromarray(np.clip(pixels.astype(np.int16) + rng.integers(-20, 20, pixels.shape), 0, 255)
                           .astype(np.uint8))


def test_the_bundle_states_both_encoders_and_the_added_conditions(xl_bundle):
    m = json.loads((xl_bundle / "edgeldm.json").read_text())
    assert m["family"] == "sdxl" and m["format_version"] == 4 and m["pipeline_config"] == {
        "force_zeros_for_empty_prompt": True}
    outputs = [t["name"] for t in m["components"]["text_encoder_2"]["io"]["outputs"]]
    # optimum's contract: the projected pooled embedding first, then every layer's states (5 layers: 0 … 5)
    assert outputs == ["text_embeds", "last_hidden_state", *(f"hidden_states.{i}" for i in range(6))]
    unet_in = {t["name"]: t["shape"] for t in m["components"]["unet"]["io"]["inputs"]}
    assert unet_in["text_embeds"] == ["batch_size", 64] and unet_in["time_ids"] == ["batch_size", 6]
    text = m["generation"]["text"]
    assert [(e["component"], e["output"], e.get("pooled_output")) for e in text["encoders"]] == [
        ("text_encoder", "hidden_states.4", None), ("text_encoder_2", "hidden_states.4", "text_embeds")]
    assert text["encoders"][1]["tokenizer"] == "tokenizer_2/tokenizer.json" and text["encoders"][1]["pad_token_id"] == 0
    assert set(text["added_conditions"]) == {"text_embeds", "time_ids"} and "zeros" in text["unconditional"]
    assert "tokenizer_2/tokenizer.json" in m["tokenizer_2"]["files"]


@pytest.mark.parametrize("negative", [None, "a red circle"])
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_runtime_draws_the_diffusers_sdxl_image(xl_bundle, xl_pipe, noise, backend, negative):
    """No negative prompt: diffusers' force_zeros_for_empty_prompt (zero unconditional states and pooled
    embedding); a negative prompt goes through both encoders."""
    reference = xl_pipe(PROMPT, negative_prompt=negative, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                        latents=torch.from_numpy(noise), output_type="np").images
    t2i = Text2Image(xl_bundle, backend=backend)
    ours = t2i.decode(t2i.latents(PROMPT, negative, steps=STEPS, guidance=GUIDANCE, initial_latents=noise))
    assert psnr(ours[None], _as_uint8(reference)[None])[0] >= 40.0


def test_the_empty_negative_prompt_and_the_image_size_reach_the_unet(xl_bundle, xl_pipe):
    """An explicit "" goes through the encoders (only None is zeros); another size is another micro-conditioning
    (time_ids), drawn as diffusers draws it."""
    t2i = Text2Image(xl_bundle)
    wide = np.random.default_rng(5).standard_normal((1, 4, SIZE // 2, SIZE)).astype(np.float32)
    base = t2i.latents(PROMPT, steps=2, height=SIZE, width=2 * SIZE, initial_latents=wide)
    assert not np.array_equal(base, t2i.latents(PROMPT, "", steps=2, height=SIZE, width=2 * SIZE,
                                                initial_latents=wide))
    reference = xl_pipe(PROMPT, num_inference_steps=2, guidance_scale=GUIDANCE, height=SIZE, width=2 * SIZE,
                        latents=torch.from_numpy(wide), output_type="np").images
    assert psnr(t2i.decode(base)[None], _as_uint8(reference)[None])[0] >= 40.0


def test_optimum_sdxl_pipelines_load_the_bundle(xl_bundle, noise):
    from optimum.intel import OVStableDiffusionXLPipeline
    from optimum.onnxruntime import ORTStableDiffusionXLPipeline

    t2i = Text2Image(xl_bundle)
    ours = t2i.decode(t2i.latents(PROMPT, steps=STEPS, guidance=GUIDANCE, initial_latents=noise))
    ort = ORTStableDiffusionXLPipeline.from_pretrained(str(xl_bundle))
    image = ort(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=torch.from_numpy(noise),
                output_type="np").images
    assert psnr(ours[None], _as_uint8(image)[None])[0] >= 35.0
    ov = OVStableDiffusionXLPipeline.from_pretrained(str(xl_bundle), compile=True,
                                                     ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    image = ov(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=torch.from_numpy(noise),
               output_type="np", height=SIZE, width=SIZE).images
    assert psnr(ours[None], _as_uint8(image)[None])[0] >= 35.0


def test_img2img_gives_the_diffusers_sdxl_image(xl_bundle, xl_pipe):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipe = StableDiffusionXLImg2ImgPipeline(**xl_pipe.components, requires_aesthetics_score=False)
    reference = pipe(PROMPT, image=_input_image(), strength=0.6, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                     generator=torch.Generator().manual_seed(4), output_type="np").images
    t2i = Text2Image(xl_bundle)
    ours = t2i.decode(t2i.latents(PROMPT, steps=STEPS, guidance=GUIDANCE, image=_input_image(), strength=0.6,
                                  noise=_torch_draws(4)))
    assert psnr(ours[None], _as_uint8(reference)[None])[0] >= 40.0


def test_inpainting_gives_the_diffusers_sdxl_image(xl_bundle, xl_pipe):
    from diffusers import StableDiffusionXLInpaintPipeline
    from PIL import Image

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[SIZE // 2:, SIZE // 3:] = 255
    mask = Image.fromarray(mask)
    pipe = StableDiffusionXLInpaintPipeline(**xl_pipe.components, requires_aesthetics_score=False)
    reference = pipe(PROMPT, image=_input_image(), mask_image=mask, strength=1.0, num_inference_steps=STEPS,
                     guidance_scale=GUIDANCE, height=SIZE, width=SIZE, generator=torch.Generator().manual_seed(3),
                     output_type="np").images
    t2i = Text2Image(xl_bundle)
    ours = t2i.decode(t2i.latents(PROMPT, steps=STEPS, guidance=GUIDANCE, image=_input_image(), mask=mask,
                                  strength=1.0, noise=_torch_draws(3)))
    assert psnr(ours[None], _as_uint8(reference)[None])[0] >= 40.0


def test_quantization_covers_both_text_encoders(xl_bundle, tmp_path):
    """A scheme's default text_encoder stands for SDXL's text_encoder_2 as well (the larger of the two), the
    capture records both, and the quantized bundle runs."""
    import edgeldm

    out = tmp_path / "int8"
    edgeldm.quantize(xl_bundle, out, backend="onnx", scheme="int8-weights", calib_samples=1, image_prompts=0)
    m = json.loads((out / "edgeldm.json").read_text())
    assert {c for c, e in m["components"].items() if e["precision"] == "int8-weights"} == {
        "text_encoder", "text_encoder_2", "unet", "vae_decoder"}
    assert m["quantization"]["calibration"]["calls"]["text_encoder_2"] == 1
    assert m["family"] == "sdxl" and m["generation"]["text"]["encoders"][1]["component"] == "text_encoder_2"
    image = Text2Image(out)("a red circle", steps=2)
    assert image.size == (SIZE, SIZE)


def test_core_ml_names_the_hidden_states_without_dots(xl_pipe, tmp_path):
    """Core ML features allow no dots: the package says hidden_states_0 … and records the renaming; the session
    reads them back under the manifest's names (coreml_session.coreml_name)."""
    import coremltools as ct

    from edgeldm.exporters.bundle import component_ios
    from edgeldm.exporters.coreml_export import export_coreml
    from edgeldm.exporters.torch_modules import component_module
    from edgeldm.runtimes.backends.coreml_session import coreml_name

    io = component_ios(xl_pipe, SIZE, SIZE)["text_encoder_2"].static()
    export_coreml(component_module(xl_pipe, "text_encoder_2", io), io, tmp_path, vocab_size=49408)
    model = ct.models.MLModel(str(tmp_path / "model.mlpackage"), skip_model_load=True)
    names = [o.name for o in model.get_spec().description.output]
    assert names == [coreml_name(n) for n in io.output_names] and "hidden_states_5" in names
    adaptations = json.loads(model.user_defined_metadata["io_adaptations"])
    assert adaptations["hidden_states.5"]["name"] == ["hidden_states.5", "hidden_states_5"]

"""optimum's pipelines load an edgeldm bundle and draw the same image as edgeldm's runtime."""

import numpy as np
import pytest
import torch

from edgeldm.benchmarks.quality import psnr
from edgeldm.runtimes.text2image import Text2Image

PROMPT = "a large blue square in the bottom right on a black background"
STEPS, GUIDANCE = 4, 7.5


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(11).standard_normal((1, 4, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def ours(tiny_random_bundle, noise):
    t2i = Text2Image(tiny_random_bundle, backend="onnx")
    return t2i.decode(t2i.latents(PROMPT, steps=STEPS, guidance=GUIDANCE, initial_latents=noise))


def _as_uint8(images) -> np.ndarray:
    return np.clip(np.asarray(images[0]) * 255 + 0.5, 0, 255).astype(np.uint8)


def test_optimum_onnxruntime_pipeline_loads_the_bundle(tiny_random_bundle, noise, ours):
    from optimum.onnxruntime import ORTStableDiffusionPipeline

    pipe = ORTStableDiffusionPipeline.from_pretrained(str(tiny_random_bundle))
    image = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=torch.from_numpy(noise),
                 output_type="np").images
    assert psnr(ours[None], _as_uint8(image)[None])[0] >= 35.0


def test_optimum_intel_openvino_pipeline_loads_the_bundle(tiny_random_bundle, noise, ours):
    from optimum.intel import OVStableDiffusionPipeline

    pipe = OVStableDiffusionPipeline.from_pretrained(str(tiny_random_bundle), compile=True,
                                                     ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    image = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=torch.from_numpy(noise),
                 output_type="np", height=64, width=64).images
    assert psnr(ours[None], _as_uint8(image)[None])[0] >= 35.0


@pytest.fixture(scope="module")
def lcm_bundle(tmp_path_factory, tiny_random_lcm):
    """The LCM-shaped tiny-random, exported."""
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("lcm") / "bundle"
    export_bundle(str(tiny_random_lcm[1]), out, ExportConfig(backends=("onnx",)))
    return out


def test_optimum_lcm_pipeline_loads_an_lcm_bundle(lcm_bundle, noise):
    from optimum.onnxruntime import ORTLatentConsistencyModelPipeline

    t2i = Text2Image(lcm_bundle, backend="onnx")
    assert t2i.guidance_embedding_dim == 32 and t2i.defaults["steps"] == 4
    # one step: LCM injects fresh noise between steps, which each side draws from its own generator
    ours = t2i.decode(t2i.latents(PROMPT, steps=1, guidance=8.0, initial_latents=noise))
    pipe = ORTLatentConsistencyModelPipeline.from_pretrained(str(lcm_bundle))
    image = pipe(PROMPT, num_inference_steps=1, guidance_scale=8.0, latents=torch.from_numpy(noise),
                 output_type="np").images
    assert psnr(ours[None], _as_uint8(image)[None])[0] >= 35.0
    # the guidance scale reaches the UNet as an embedding: another scale, another image
    other = t2i.decode(t2i.latents(PROMPT, steps=1, guidance=2.0, initial_latents=noise))
    assert not np.array_equal(ours, other)

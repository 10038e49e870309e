"""#27 image-to-image and inpainting in the torch-free runtime: the image diffusers' img2img and inpainting
pipelines make from the same draws (every sampler, LCM's own schedule truncation, an ordinary and an inpainting
UNet), and one-line errors for bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeldm.benchmarks.quality import psnr
from edgeldm.runtimes.text2image import Text2Image

PROMPT = "a small blue square in the bottom right on a white background"


def _input_image(size=64):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = np.full((size, size, 3), 255, np.uint8)
    pixels[8:30, 10:34] = (220, 30, 30)  # a red block, plus texture the VAE has to carry
    pixels = np.clip(pixels.astype(np.int16) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def lcm_encoder_bundle(tmp_path_factory, tiny_random_lcm):
    """The LCM-shaped tiny-random with its VAE encoder exported."""
    import edgeldm

    pipe, folder = tiny_random_lcm
    out = tmp_path_factory.mktemp("lcm-img2img") / "bundle"
    edgeldm.export(folder, out, backend=("onnx",), vae_encoder=True)
    return pipe, out


def _mask(size=64):
    """White (repaint) over the lower right, black (keep) elsewhere; grey edges the 0.5 threshold decides."""
    from PIL import Image

    mask = np.zeros((size, size), np.uint8)
    mask[size // 2:, size // 3:] = 255
    mask[size // 2 - 1, :] = 120  # below 0.5: kept
    mask[:, size // 3 - 1] = 140  # at or above 0.5: repainted
    return Image.fromarray(mask)


@pytest.fixture(scope="module")
def inpainting_model(tmp_path_factory, tiny_random_pipe):
    """tiny-random with a seeded 9-channel UNet saved as an inpainting folder, and its bundle (exported without
    --vae-encoder: an inpainting model gets its encoder anyway)."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    import edgeldm

    p = tiny_random_pipe
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**p.unet.config, "in_channels": 9})
    pipe = StableDiffusionInpaintPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=unet,
                                          scheduler=p.scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    root = tmp_path_factory.mktemp("inpaint")
    pipe.save_pretrained(str(root / "src"), safe_serialization=True)
    edgeldm.export(root / "src", root / "bundle", backend=("onnx",))
    return pipe, root / "bundle"


def _torch_draws(seed):
    """Our runtime's noise from torch's CPU generator: the draws diffusers makes, in its order."""
    generator = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn(shape, generator=generator).numpy()


def _as_uint8(images):
    return np.clip(images[0] * 255 + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("sampler, steps, strength", [
    (None, 4, 0.6),  # the bundle's own scheduler (PNDM)
    ("ddim", 4, 0.6),
    ("euler", 2, 0.8),
    ("dpm++2m", 25, 0.3),
])
def test_img2img_gives_the_diffusers_image(encoder_bundle, tiny_random_pipe, sampler, steps, strength):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, \
        StableDiffusionImg2ImgPipeline

    classes = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++2m": DPMSolverMultistepScheduler}
    components = dict(tiny_random_pipe.components)
    if sampler is not None:
        components["scheduler"] = classes[sampler].from_config(tiny_random_pipe.scheduler.config)
    pipe = StableDiffusionImg2ImgPipeline(**components)
    image = _input_image()
    reference = pipe(PROMPT, image=image, strength=strength, num_inference_steps=steps, guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(4), output_type="np").images
    t2i = Text2Image(encoder_bundle, sampler=sampler)
    ours = t2i.decode(t2i.latents(PROMPT, steps=steps, guidance=7.5, image=image, strength=strength,
                                  noise=_torch_draws(4)))
    assert psnr(ours[None], _as_uint8(reference)[None])[0] >= 40.0


@pytest.mark.parametrize("sampler", ["euler-a", "tcd"])
@pytest.mark.parametrize("strength", [None, 0.6])
def test_the_stochastic_samplers_give_the_diffusers_image(encoder_bundle, tiny_random_pipe, sampler, strength):
    """Euler ancestral and TCD (gamma 0.3) draw fresh noise at every step: text-to-image and image-to-image
    replay diffusers' pipelines draw for draw."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, \
        TCDScheduler

    from edgeldm.schedulers import call_kwargs

    components = dict(tiny_random_pipe.components)
    components["scheduler"] = {"euler-a": EulerAncestralDiscreteScheduler, "tcd": TCDScheduler}[sampler].from_config(
        tiny_random_pipe.scheduler.config)
    pipe = (StableDiffusionPipeline if strength is None else StableDiffusionImg2ImgPipeline)(**components)
    given = {} if strength is None else {"image": _input_image(), "strength": strength}
    reference = pipe(PROMPT, num_inference_steps=4, guidance_scale=7.5, generator=torch.Generator().manual_seed(6),
                     output_type="np", **({"height": 64, "width": 64} if strength is None else {}), **given,
                     **call_kwargs(pipe)).images
    t2i = Text2Image(encoder_bundle, sampler=sampler)
    ours = t2i.decode(t2i.latents(PROMPT, steps=4, guidance=7.5, height=64, width=64, noise=_torch_draws(6), **given))
    assert psnr(ours[None], _as_uint8(reference)[None])[0] >= 40.0


@pytest.mark.parametrize("steps, strength", [(1, 0.5), (4, 0.6)])
def test_lcm_img2img_truncates_its_own_schedule_as_diffusers_does(lcm_encoder_bundle, steps, strength):
    from diffusers import LatentConsistencyModelImg2ImgPipeline

    pipe, bundle = lcm_encoder_bundle
    image = _input_image()
    reference = LatentConsistencyModelImg2ImgPipeline(**pipe.components)(
        PROMPT, image=image, strength=strength, num_inference_steps=steps, guidance_scale=8.0,
        generator=torch.Generator().manual_seed(2), output_type="np").images
    t2i = Text2Image(bundle)
    ours = t2i.decode(t2i.latents(PROMPT, steps=steps, guidance=8.0, image=image, strength=strength,
                                  noise=_torch_draws(2)))
    assert psnr(ours[None], _as_uint8(reference)[None])[0] >= 40.0


@pytest.mark.parametrize("unet, sampler, steps, strength", [
    ("4-channel", None, 4, 1.0),  # pure noise under the mask, the known region blended back after every step
    ("4-channel", "ddim", 5, 0.6),
    ("9-channel", None, 4, 1.0),  # the mask and the masked image's latents beside the latents at every call
    ("9-channel", "euler", 4, 0.6),
])
def test_inpainting_gives_the_diffusers_image(encoder_bundle, inpainting_model, tiny_random_pipe, unet, sampler,
                                              steps, strength):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionInpaintPipeline

    source, bundle = (tiny_random_pipe, encoder_bundle) if unet == "4-channel" else inpainting_model
    components = dict(source.components)
    if sampler is not None:
        components["scheduler"] = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}[sampler].from_config(
            source.scheduler.config)
    reference = StableDiffusionInpaintPipeline(**components)(
        PROMPT, image=_input_image(), mask_image=_mask(), strength=strength, num_inference_steps=steps,
        guidance_scale=7.5, height=64, width=64, generator=torch.Generator().manual_seed(3), output_type="np").images
    t2i = Text2Image(bundle, sampler=sampler)
    ours = t2i.decode(t2i.latents(PROMPT, steps=steps, guidance=7.5, image=_input_image(), mask=_mask(),
                                  strength=strength, noise=_torch_draws(3)))
    assert psnr(ours[None], _as_uint8(reference)[None])[0] >= 40.0


def test_an_inpainting_bundle_records_its_pipeline_and_needs_image_and_mask(inpainting_model):
    import json

    from edgeldm.errors import EdgeLDMError
    from edgeldm.manifest import MANIFEST_FILE

    _, bundle = inpainting_model
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    assert manifest["pipeline"] == "StableDiffusionInpaintPipeline"
    assert manifest["image"]["latent_channels"] == 4 and "vae_encoder" in manifest["components"]
    assert manifest["components"]["unet"]["io"]["inputs"][0]["shape"][1] == 9
    t2i = Text2Image(bundle)
    assert t2i.inpainting_unet
    with pytest.raises(EdgeLDMError, match="inpainting UNet"):
        t2i(PROMPT, steps=2)
    with pytest.raises(EdgeLDMError, match="inpainting UNet"):
        t2i(PROMPT, steps=2, image=_input_image())
    with pytest.raises(EdgeLDMError, match="the mask is 32x32; the image is 64x64"):
        t2i(PROMPT, steps=2, image=_input_image(), mask=_mask(32))


@pytest.mark.parametrize("mask", [None, "mask"])
def test_openvino_gives_the_onnx_image(encoder_bundle, mask):
    images = [np.asarray(Text2Image(encoder_bundle, backend=backend)(
        PROMPT, steps=4, seed=5, image=_input_image(), mask=_mask() if mask else None, strength=0.7))
        for backend in ("onnx", "openvino")]
    assert psnr(images[0][None], images[1][None])[0] >= 40.0


def test_strength_moves_the_output_away_from_the_input(encoder_bundle):
    t2i = Text2Image(encoder_bundle)
    source = np.asarray(_input_image(), np.float64)
    gaps = [np.abs(np.asarray(t2i(PROMPT, steps=10, seed=1, image=_input_image(), strength=s), np.float64)
                   - source).mean() for s in (0.1, 1.0)]
    assert gaps[0] < gaps[1]


def test_a_size_off_the_multiple_is_resized_with_a_warning_or_refused(encoder_bundle, caplog):
    from edgeldm.errors import EdgeLDMError

    t2i = Text2Image(encoder_bundle)
    step = t2i.size_multiple  # tiny-random: VAE factor 2 x one UNet downsampling = 4
    odd = _input_image(64 + step + 2)
    fitted = 64 + step
    import logging

    edgeldm_logger = logging.getLogger("edgeldm")
    edgeldm_logger.addHandler(caplog.handler)  # an earlier CLI test's configuration stops propagation to caplog
    try:
        with caplog.at_level("WARNING", logger="edgeldm"):
            out = t2i(PROMPT, steps=2, image=odd, strength=0.5)
    finally:
        edgeldm_logger.removeHandler(caplog.handler)
    assert out.size == (fitted, fitted)
    assert f"resized from {odd.width}x{odd.height} to {fitted}x{fitted}" in caplog.text
    with pytest.raises(EdgeLDMError, match=f"{odd.width}x{odd.height}"):
        t2i(PROMPT, steps=2, image=odd, strength=0.5, resize=False)


def _run(args, capsys):
    from edgeldm.cli import main

    try:
        code = main(args)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    return code, capsys.readouterr().err


def test_cli_writes_the_img2img_image(encoder_bundle, tmp_path, capsys):
    _input_image().save(tmp_path / "in.png")
    code, err = _run(["run", str(encoder_bundle), "--prompt", PROMPT, "--image", str(tmp_path / "in.png"),
                      "--strength", "0.5", "--steps", "4", "-o", str(tmp_path / "out.png")], capsys)
    assert code == 0, err
    t2i = Text2Image(encoder_bundle)
    expected = np.asarray(t2i(PROMPT, steps=4, image=tmp_path / "in.png", strength=0.5))
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)


@pytest.mark.parametrize("case, code, message", [
    ("strength", 2, "strength must lie in (0, 1]"),
    ("strength-alone", 1, "--strength needs --image"),
    ("no-encoder", 1, "has no VAE encoder"),
    ("not-an-image", 1, "is not an image"),
    ("missing", 1, "does not exist"),
    ("no-resize", 1, "70x70; this model needs sides that are multiples of"),
    ("overwrite-input", 1, "in.png"),
    ("few-steps", 1, "leaves no step"),
    ("mask-alone", 1, "--mask needs --image"),
    ("mask-size", 1, "the mask is 32x32; the image is 64x64"),
    ("mask-missing", 1, "does not exist"),
])
def test_bad_img2img_input_is_one_line_and_writes_nothing(encoder_bundle, tiny_random_bundle, tmp_path, capsys,
                                                          case, code, message):
    _input_image().save(tmp_path / "in.png")
    _input_image(70).save(tmp_path / "odd.png")
    (tmp_path / "notes.png").write_text("not a picture")
    out = tmp_path / "out.png"
    args = ["run", str(encoder_bundle), "--prompt", PROMPT, "-o", str(out), "--image", str(tmp_path / "in.png")]
    extra = {
        "strength": ["--strength", "1.5"],
        "strength-alone": None,
        "no-encoder": None,
        "not-an-image": None,
        "missing": None,
        "no-resize": None,
        "overwrite-input": None,
        "few-steps": ["--steps", "2", "--strength", "0.2"],
        "mask-alone": None,
        "mask-size": ["--mask", str(tmp_path / "small-mask.png")],
        "mask-missing": ["--mask", str(tmp_path / "nope-mask.png")],
    }[case]
    _mask(32).save(tmp_path / "small-mask.png")
    if case in ("strength-alone", "mask-alone"):
        args = args[:-2] + (["--strength", "0.5"] if case == "strength-alone" else
                            ["--mask", str(tmp_path / "small-mask.png")])
    elif case == "no-encoder":
        args[1] = str(tiny_random_bundle)
    elif case in ("not-an-image", "missing", "no-resize"):
        args[-1] = str(tmp_path / {"not-an-image": "notes.png", "missing": "nope.png", "no-resize": "odd.png"}[case])
        if case == "no-resize":
            args.append("--no-resize")
    elif case == "overwrite-input":
        args[args.index(str(out))] = str(tmp_path / "in.png")
        args.append("--overwrite")
    before = sorted(p.name for p in tmp_path.iterdir())
    got, err = _run(args + (extra or []), capsys)
    assert got == code and message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert Path(tmp_path / "in.png").stat().st_size > 100  # the input is untouched

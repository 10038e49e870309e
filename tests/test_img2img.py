"""#27 image-to-image in the torch-free runtime: the image diffusers' img2img pipelines make from the same draws
(every sampler, LCM's own schedule truncation included), and one-line errors for bad input."""

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
def encoder_bundle(tmp_path_factory, tiny_random_dir):
    import edgeldm

    out = tmp_path_factory.mktemp("img2img") / "bundle"
    edgeldm.export(tiny_random_dir, out, backend=("onnx",), vae_encoder=True)
    return out


@pytest.fixture(scope="module")
def lcm_encoder_bundle(tmp_path_factory, tiny_random_pipe):
    """An LCM-shaped tiny-random (guidance embedding, LCMScheduler) with its VAE encoder exported."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel

    import edgeldm

    p = tiny_random_pipe
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(p.unet.config, time_cond_proj_dim=32)
    pipe = LatentConsistencyModelPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=unet,
                                          scheduler=LCMScheduler.from_config(p.scheduler.config), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    root = tmp_path_factory.mktemp("lcm-img2img")
    pipe.save_pretrained(str(root / "src"), safe_serialization=True)
    edgeldm.export(root / "src", root / "bundle", backend=("onnx",), vae_encoder=True)
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


def test_strength_moves_the_output_away_from_the_input(encoder_bundle):
    t2i = Text2Image(encoder_bundle)
    source = np.asarray(_input_image(), np.float64)
    gaps = [np.abs(np.asarray(t2i(PROMPT, steps=10, seed=1, image=_input_image(), strength=s), np.float64)
                   - source).mean() for s in (0.1, 1.0)]
    assert gaps[0] < gaps[1]


def test_a_size_off_the_multiple_is_resized_with_a_warning_or_refused(encoder_bundle, caplog):
    from edgeldm.errors import EdgeLDMError

    t2i = Text2Image(encoder_bundle)
    odd = _input_image(70)  # tiny-random's sides must be multiples of 8 (VAE factor 2 x 2 downsamplings x 2)
    with caplog.at_level("WARNING", logger="edgeldm"):
        out = t2i(PROMPT, steps=2, image=odd, strength=0.5)
    assert out.size == (64, 64) and "resized from 70x70 to 64x64" in caplog.text
    with pytest.raises(EdgeLDMError, match="70x70"):
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
    ("no-resize", 1, "multiples of 8"),
    ("overwrite-input", 1, "in.png"),
    ("few-steps", 1, "leaves no step"),
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
    }[case]
    if case == "strength-alone":
        args = args[:-2] + ["--strength", "0.5"]
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

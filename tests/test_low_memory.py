"""#27 memory: low-memory mode (one component resident at a time) gives the normal image, the tiled VAE is
diffusers' enable_tiling over a backend session, and the resident-peak probe the bench uses per component."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from edgeldm.benchmarks.quality import psnr
from edgeldm.runtimes.text2image import Text2Image

PROMPT = "a small blue square in the bottom right on a white background"


def _input_image(size):
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels = np.full((size, size, 3), 250, np.uint8)
    pixels[size // 4:size // 2, size // 5:size // 2] = (30, 60, 220)
    return Image.fromarray(np.clip(pixels + rng.integers(-25, 25, pixels.shape), 0, 255).astype(np.uint8))


def test_low_memory_gives_the_same_image_and_holds_no_session_between_calls(encoder_bundle):
    normal, low = Text2Image(encoder_bundle), Text2Image(encoder_bundle, low_memory=True, vae_tile=64)
    assert low.low_memory and all(not s.is_open for s in low._lazy.values())
    for kwargs in ({}, {"image": _input_image(64), "strength": 0.6}):
        expected = np.asarray(normal(PROMPT, steps=3, seed=2, **kwargs))
        assert np.array_equal(np.asarray(low(PROMPT, steps=3, seed=2, **kwargs)), expected)
        assert all(not s.is_open for s in low._lazy.values())  # every phase released what it opened
    # ONNX Runtime's arena is off in low-memory mode (its largest activations would outlive each call)
    options = low._lazy["unet"].session.session.get_session_options()
    assert not options.enable_cpu_mem_arena and not options.enable_mem_pattern


@pytest.mark.parametrize("tile", [8, 16])
def test_the_tiled_decode_is_diffusers_enable_tiling(tiny_random_bundle, tiny_random_pipe, tile):
    """At 4x tiny-random's size (latents 128 a side) over tiles of 8 and 16 latents: the ONNX decode, tiled and
    blended in numpy, is what diffusers' AutoencoderKL decodes with tiling on."""
    vae = tiny_random_pipe.vae
    t2i = Text2Image(tiny_random_bundle, vae_tile=tile)
    latents = np.random.default_rng(3).standard_normal((1, 4, 128, 128)).astype(np.float32)
    ours = t2i.decode(latents)
    vae.enable_tiling()
    vae.tile_latent_min_size, vae.tile_sample_min_size = tile, tile * t2i.image["vae_scale_factor"]
    try:
        with torch.no_grad():
            reference = vae.decode(torch.from_numpy(latents) / vae.config.scaling_factor).sample[0]
    finally:
        vae.disable_tiling()
    reference = np.clip((reference.permute(1, 2, 0).numpy() + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    assert ours.shape == reference.shape == (256, 256, 3)
    assert psnr(ours[None], reference[None])[0] >= 40.0
    # and it is not the untiled decode: the tiles are real
    assert not np.array_equal(ours, Text2Image(tiny_random_bundle).decode(latents))


def test_the_tiled_encode_is_diffusers_enable_tiling(encoder_bundle, tiny_random_pipe):
    from edgeldm.runtimes.images import to_model_input

    vae = tiny_random_pipe.vae
    pixels = to_model_input(_input_image(192))
    ours = Text2Image(encoder_bundle, vae_tile=32).encode(pixels)  # the posterior mean, scaled
    vae.enable_tiling()
    vae.tile_latent_min_size, vae.tile_sample_min_size = 32, 64
    try:
        with torch.no_grad():
            reference = vae.encode(torch.from_numpy(pixels)).latent_dist.mean.numpy() * vae.config.scaling_factor
    finally:
        vae.disable_tiling()
    assert ours.shape == reference.shape == (1, 4, 96, 96)
    assert np.abs(ours - reference).max() <= 1e-3 * max(1.0, np.abs(reference).max())


def test_bad_tiles_are_refused(tiny_random_bundle, tiny_random_coreml_bundle):
    from edgeldm.errors import EdgeLDMError

    with pytest.raises(EdgeLDMError, match="at least 4"):
        Text2Image(tiny_random_bundle, vae_tile=2)
    with pytest.raises(EdgeLDMError, match="static shapes"):
        Text2Image(tiny_random_coreml_bundle, vae_tile=16)
    # low-memory mode on a static bundle keeps its one size: no tiling, no error
    assert Text2Image(tiny_random_coreml_bundle, low_memory=True).vae_tile is None


def test_cli_low_memory_writes_the_api_image(tiny_random_bundle, tmp_path):
    from PIL import Image

    from edgeldm.cli import main

    out = tmp_path / "x.png"
    assert main(["--quiet", "run", str(tiny_random_bundle), "--prompt", PROMPT, "--steps", "2", "--height", "128",
                 "--width", "128", "--low-memory", "--vae-tile", "16", "-o", str(out)]) == 0
    expected = Text2Image(tiny_random_bundle, vae_tile=16)(PROMPT, steps=2, height=128, width=128)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(expected))
    assert main(["run", str(tiny_random_bundle), "--prompt", PROMPT, "--vae-tile", "1", "-o",
                 str(tmp_path / "y.png")]) == 1
    assert not (tmp_path / "y.png").exists()


def test_bench_refuses_memory_options_for_a_torch_target():
    from edgeldm.benchmarks.targets import BenchConfig, make_target
    from edgeldm.errors import EdgeLDMError

    with pytest.raises(EdgeLDMError, match="apply to bundle targets"):
        make_target("diffusers:tiny-random", BenchConfig(low_memory=True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resetting the resident high-water mark needs "
                                                                  "Linux's /proc/self/clear_refs")
def test_a_window_sees_its_own_peak_and_the_process_peak_keeps_the_earlier_one():
    from edgeldm.benchmarks.timing import ResidentPeak, peak_rss_bytes

    probe = ResidentPeak()
    assert probe.available
    big = np.ones(300 * 2**20 // 8)  # 300 MiB resident before the window
    del big
    before = peak_rss_bytes()
    probe.start_window()
    small = np.ones(60 * 2**20 // 8)
    window = probe.window_peak()
    del small
    assert window < before - 150 * 2**20  # the window does not see the earlier 300 MiB
    probe.start_window()
    assert peak_rss_bytes() >= before  # the process figure does


def test_an_attention_sliced_export_gives_the_unsliced_image(tiny_random_dir, tiny_random_bundle, tmp_path):
    """--attention-slice 1: one head's attention matrix at a time, the same arithmetic, the batch still dynamic
    (diffusers' SlicedAttnProcessor, which slices batch x heads, exported a graph OpenVINO refused at batch 1)."""
    import json

    import edgeldm
    from edgeldm.manifest import MANIFEST_FILE

    edgeldm.export(tiny_random_dir, tmp_path / "sliced", backend=("onnx", "openvino"), attention_slice=1)
    manifest = json.loads((tmp_path / "sliced" / MANIFEST_FILE).read_text())
    assert manifest["recipe"]["options"]["attention_slice"] == 1
    for backend in ("onnx", "openvino"):
        for guidance in (1.0, 7.5):  # UNet batch 1 and 2
            a = np.asarray(Text2Image(tmp_path / "sliced", backend=backend)(PROMPT, steps=3, guidance=guidance))
            b = np.asarray(Text2Image(tiny_random_bundle, backend=backend)(PROMPT, steps=3, guidance=guidance))
            assert psnr(a[None], b[None])[0] >= 40.0
    with pytest.raises(Exception, match="attention-slice"):
        edgeldm.export(tiny_random_dir, tmp_path / "bad", backend=("onnx",), attention_slice=0)
    assert not (tmp_path / "bad").exists()

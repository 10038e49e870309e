"""benchmarks/floor.py: an image's MACs add up from its components' counts, and the floor ratio is measured time
over MACs / rate (the probe's rate is a measurement; only its shape is checked here)."""

import pytest

from edgeldm.benchmarks.floor import floor_ratio, image_macs, throughput


def test_image_macs_add_up_per_component_and_step():
    from edgeldm.info import describe_model

    one = image_macs("tiny-random", steps=1, guidance=False)
    four = image_macs("tiny-random", steps=4, guidance=False)
    guided = image_macs("tiny-random", steps=4, guidance=True)
    assert one["unet_step"] == describe_model("tiny-random")["unet"]["macs_per_step"]  # the info count, batch 1
    assert four["total"] - one["total"] == 3 * one["unet_step"]
    assert guided["unet_step"] == 2 * four["unet_step"] and guided["text_encoder"] == 2 * four["text_encoder"]
    assert four["vae_decoder"] == one["vae_decoder"] > 0
    assert four["total"] == four["text_encoder"] + four["unet"] + four["vae_decoder"]
    # twice the side: the convolutions' 4x, and more (the mid-block attention is quadratic in the tokens)
    assert image_macs("tiny-random", height=128, width=128, steps=1, guidance=False)["vae_decoder"] > \
        4 * one["vae_decoder"]


def test_an_sdxl_image_counts_both_text_encoders(tmp_path):
    """SDXL's prompt goes through two encoders (the second the larger): the floor counts both, also for a
    folder loaded by the real loading code."""
    import torch

    from edgeldm.inventory import count_macs
    from edgeldm.loading import load_pipeline

    folder = tmp_path / "xl"
    pipe = load_pipeline("tiny-random-xl", families=("sdxl",))
    pipe.save_pretrained(folder)
    macs = image_macs(str(folder), steps=1, guidance=False)
    ids = {"input_ids": torch.zeros(1, pipe.tokenizer.model_max_length, dtype=torch.long)}
    first, second = (count_macs(pipe.text_encoder, ids).total, count_macs(pipe.text_encoder_2, ids).total)
    assert second > 0 and macs["text_encoder"] == first + second
    assert image_macs("tiny-random-xl", steps=1, guidance=False)["text_encoder"] == macs["text_encoder"]


def test_the_probe_reports_both_kernels_and_the_floor_ratio_is_time_over_floor():
    rate = throughput(1, seconds=0.05)
    assert rate["best_macs_per_s"] == max(rate["matmul_macs_per_s"], rate["conv3x3_macs_per_s"]) > 0
    assert rate["matmul_int8_macs_per_s"] > 0
    assert floor_ratio(3.0, 2e9, 1e9) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        floor_ratio(0.0, 2e9, 1e9)

"""`edgeldm info`: parameters, MACs by a real counter, and the operator inventory found by walking the UNet."""

import json

import pytest

from edgeldm import describe_model
from edgeldm.cli import main


@pytest.fixture(scope="module")
def sd15_info():
    return describe_model("sd15")


def test_sd15_unet_parameters_and_operator_inventory(sd15_info):
    unet = sd15_info["components"]["unet"]
    assert abs(unet["parameters"] - 859.5e6) / 859.5e6 < 0.005
    counts = sd15_info["unet"]["operator_counts"]
    # SD v1.5: 2 ResNets in each of 4 down stages, 2 in the mid-block, 3 in each of 4 up stages
    assert counts["resnet"] == 22
    # one spatial transformer per ResNet of the 3 attention down stages (6), mid (1), 3 attention up stages (9)
    assert counts["transformer"] == 16 and counts["transformer_block"] == 16
    assert counts["self_attention"] == 16 and counts["cross_attention"] == 16 and counts["feed_forward"] == 16
    assert counts["downsampler"] == 3 and counts["upsampler"] == 3 and counts["mid_block"] == 1
    assert sd15_info["image_size"] == [512, 512] and sd15_info["latent_shape"] == [4, 64, 64]


def test_resnet_macs_match_the_convolution_formula(sd15_info):
    ops = {op["name"]: op for op in sd15_info["unet"]["operators"]}
    op = ops["down_blocks.0.resnets.0"]
    # two 3x3 convs 320->320 on a 64x64 latent, plus the 1280->320 time-embedding projection
    expected = 2 * (320 * 320 * 9 * 64 * 64) + 1280 * 320
    assert op["type"] == "resnet" and op["macs"] == expected
    assert op["parameters"] == 2 * (320 * 320 * 9 + 320) + (1280 * 320 + 320) + 4 * 320


def test_macs_follow_resolution():
    small = describe_model("sd15", height=256, width=256)
    big = describe_model("sd15", height=512, width=512)
    op = "down_blocks.0.resnets.0"
    small_op = next(o for o in small["unet"]["operators"] if o["name"] == op)
    big_op = next(o for o in big["unet"]["operators"] if o["name"] == op)
    assert big_op["macs"] - 1280 * 320 == 4 * (small_op["macs"] - 1280 * 320)  # convs scale with pixels
    # attention is quadratic in tokens, so the whole UNet grows by more than 4x
    assert big["unet"]["macs_per_step"] > 4 * small["unet"]["macs_per_step"]


def test_mac_shares_are_fractions_of_the_total(sd15_info):
    total = sd15_info["unet"]["macs_per_step"]
    for op in sd15_info["unet"]["operators"]:
        assert 0 < op["mac_share"] < 1
        assert op["mac_share"] == pytest.approx(op["macs"] / total)
    top_level = [o for o in sd15_info["unet"]["operators"] if o["type"] in ("resnet", "transformer",
                                                                              "downsampler", "upsampler")]
    assert sum(o["mac_share"] for o in top_level) < 1.0  # conv_in/out, time embedding are outside operators


def test_cli_info_json_for_tiny_random(capsys):
    assert main(["info", "tiny-random", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["schema"] == "edgeldm.info/1"
    for name in ("text_encoder", "unet", "vae"):
        assert info["components"][name]["parameters"] > 0
    assert info["unet"]["operator_counts"]["resnet"] == 12
    assert info["unet"]["operator_counts"]["transformer"] == 6
    assert {"name", "type", "parameters", "macs"} <= set(info["unet"]["operators"][0])


def test_info_on_a_folder_reports_disk_size_and_dtype(tiny_random_dir):
    info = describe_model(str(tiny_random_dir))
    unet = info["components"]["unet"]
    weights = tiny_random_dir / "unet" / "diffusion_pytorch_model.safetensors"
    assert unet["size_on_disk"] >= weights.stat().st_size
    assert unet["dtype"] == "float32" and unet["weight_format"] == "safetensors"
    assert info["source_kind"] == "folder"


def test_cli_info_tables_and_bad_size(capsys):
    assert main(["info", "tiny-random", "--operators"]) == 0
    out = capsys.readouterr().out
    assert "up_blocks.0.attentions.0.transformer_blocks.0.attn2" in out and "cross_attention" in out
    assert main(["info", "tiny-random", "--height", "-8"]) == 1
    assert "--height must be positive" in capsys.readouterr().err
    assert main(["info", "tiny-random", "--height", "63"]) == 1
    assert "multiples of 2" in capsys.readouterr().err


# tiny's 8x8 latents run SDPA's CPU flash kernel, which torch's counter does not know; tiny-random's do not
@pytest.mark.parametrize("model, factor", [("tiny-random", 2), ("tiny", 8)])
def test_a_small_model_counted_by_running_it_matches_the_traced_count(monkeypatch, model, factor):
    from edgeldm import inventory, load_pipeline

    unet = load_pipeline(model).unet
    inputs = inventory.unet_example_inputs(unet, 64, 64, vae_scale_factor=factor)
    run = inventory.count_macs(unet, inputs)  # small and real: computed, not traced
    monkeypatch.setattr(inventory, "REAL_COUNT_MAX_PARAMS", 0)
    traced = inventory.count_macs(unet, inputs)
    assert run.total == traced.total > 0 and run.per_module == traced.per_module
    from diffusers import UNet2DConditionModel

    from edgeldm.zoo.random_init import empty_weights

    with empty_weights():  # what `edgeldm info` counts: the architecture on the meta device
        meta = UNet2DConditionModel.from_config(unet.config).eval()
    assert inventory.count_macs(meta, inputs).per_module == run.per_module

"""Architecture presets: embedded configs, real parameter counts, seeded random weights."""

import numpy as np
import pytest
import torch

from edgeldm.zoo import ZOO, build_preset, get_zoo_entry
from edgeldm.errors import CheckpointNotFoundError

# UNet parameter counts published for these architectures (SD v1.5 model card; BK-SDM paper, Table 1)
PUBLISHED_UNET_PARAMS = {"sd15": 859.52e6, "bk-sdm-small": 482.3e6, "bk-sdm-tiny": 323.4e6, "sd21-base": 865.9e6}


@pytest.mark.parametrize("name,expected", PUBLISHED_UNET_PARAMS.items())
def test_preset_unet_parameters_match_published_counts(name, expected):
    pipe = build_preset(name, device="meta")
    n = sum(p.numel() for p in pipe.unet.parameters())
    assert abs(n - expected) / expected < 0.005, (name, n)
    assert pipe.tokenizer.model_max_length == 77 and len(pipe.tokenizer) == 49408


def test_every_preset_is_registered_with_configs():
    for name in ("sd15", "sd21-base", "bk-sdm-small", "bk-sdm-tiny", "tiny-random"):
        entry = ZOO[name]
        assert entry.kind == "preset"
        assert (entry.folder / "unet" / "config.json").is_file()


def test_unknown_zoo_name_lists_the_known_ones():
    with pytest.raises(CheckpointNotFoundError) as err:
        get_zoo_entry("sd99")
    assert "sd15" in str(err.value) and "tiny-random" in str(err.value)


def test_same_seed_same_weights_other_seed_other_weights(tiny_random_pipe):
    again = build_preset("tiny-random", seed=0)
    other = build_preset("tiny-random", seed=1)
    a, b, c = (dict(p.unet.named_parameters()) for p in (tiny_random_pipe, again, other))
    name = "down_blocks.0.resnets.0.conv1.weight"
    assert torch.equal(a[name], b[name])
    assert not torch.equal(a[name], c[name])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_random_weights_are_scaled_and_norms_are_identity(tiny_random_pipe):
    unet = tiny_random_pipe.unet
    w = unet.down_blocks[0].resnets[0].conv1.weight
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    assert abs(w.var().item() * fan_in - 1.0) < 0.1  # variance 1/fan_in
    norm = unet.down_blocks[0].resnets[0].norm1
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert not any(p.is_meta for p in unet.parameters())


def test_random_preset_generates_finite_images(tiny_random_pipe):
    out = tiny_random_pipe("a red circle", num_inference_steps=2, height=64, width=64, output_type="np",
                           generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3)
    assert np.isfinite(out).all() and out.std() > 0.01


@pytest.mark.slow
def test_sd15_preset_builds_with_real_weights_and_runs_a_step():
    pipe = build_preset("sd15", seed=0)
    unet = pipe.unet
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    with torch.no_grad():
        out = unet(torch.randn(1, 4, 8, 8), torch.tensor([10]), encoder_hidden_states=torch.randn(1, 77, 768)).sample
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()

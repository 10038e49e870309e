"""The SDXL family: presets, loading a user's folder, `info`, and the clear refusals of what is not taken yet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from original_layout import sdxl_original_state_dict

from edgeldm.errors import CheckpointError, MissingComponentError, UnsupportedPipelineError
from edgeldm.families import FAMILIES, family_of
from edgeldm.info import describe_model
from edgeldm.loading import load_pipeline
from edgeldm.zoo import build_preset, save_zoo_model

ALL = tuple(FAMILIES)
# published parameter counts of SDXL base 1.0 (diffusers' configs, counted by the SDXL report's 2.6 B UNet; the
# second text encoder is OpenCLIP ViT-bigG's text tower with its projection)
SDXL_PARAMS = {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840,
               "vae": 83_653_863}


@pytest.fixture(scope="module")
def tiny_xl_dir(tmp_path_factory):
    """tiny-random-xl written as a standard diffusers folder, by the zoo's own writer (read-only: copy to edit)."""
    return save_zoo_model("tiny-random-xl", tmp_path_factory.mktemp("xl") / "tiny-random-xl")


def test_sdxl_preset_has_the_published_architecture_and_macs_at_two_sizes():
    large = describe_model("sdxl")  # 1024 px, its sample size
    small = describe_model("sdxl", height=512, width=512)
    assert {name: large["components"][name]["parameters"] for name in SDXL_PARAMS} == SDXL_PARAMS
    assert large["pipeline"] == "StableDiffusionXLPipeline" and large["family"] == "sdxl"
    assert large["image_size"] == [1024, 1024] and large["latent_shape"] == [4, 128, 128]
    assert large["components"]["scheduler"]["class"] == "EulerDiscreteScheduler"
    ratio = large["unet"]["macs_per_step"] / small["unet"]["macs_per_step"]
    assert 3.5 < ratio < 4.5  # convolutions x4, attention over 4x the tokens a bit more
    blocks = [op for op in large["unet"]["operators"] if op["type"] == "transformer_block"]
    assert len(blocks) == 70  # 2x2 + 2x10 down, 10 mid, 3x10 + 3x2 up: every block of the deep stacks listed
    assert large["unet"]["added_conditions"]["text_embeds"] == 1280


def test_a_user_folder_loads_through_the_real_code_with_every_component(tiny_xl_dir):
    pipe = load_pipeline(tiny_xl_dir, families=ALL)
    fresh = build_preset("tiny-random-xl", seed=0)
    for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
        loaded, built = getattr(pipe, name).state_dict(), getattr(fresh, name).state_dict()
        assert loaded.keys() == built.keys() and all(torch.equal(loaded[k], built[k]) for k in built), name
    # the two text encoders are seeded apart, though they share parameter names: their draws (weights over the
    # bound of their fan-in) differ
    a = pipe.text_encoder.text_model.encoder.layers[0].mlp.fc1.weight
    b = pipe.text_encoder_2.text_model.encoder.layers[0].mlp.fc1.weight
    assert not torch.allclose(a.flatten()[:16] * a.shape[1] ** 0.5, b.flatten()[:16] * b.shape[1] ** 0.5)
    assert family_of(pipe).name == "sdxl" and pipe.unet.config.transformer_layers_per_block == [1, 2]
    assert pipe.tokenizer_2.pad_token == "!" and pipe.tokenizer.pad_token == "<|endoftext|>"  # as SDXL's
    image = pipe("a red circle", num_inference_steps=2, height=64, width=64, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all() and image.std() > 0.01


def test_info_describes_an_sdxl_folder_with_its_added_conditions(tiny_xl_dir):
    info = describe_model(str(tiny_xl_dir))
    assert info["family"] == "sdxl" and info["pipeline"] == "StableDiffusionXLPipeline"
    assert {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"} <= set(info["components"])
    assert info["components"]["text_encoder_2"]["size_on_disk"] > 0
    unet = info["unet"]
    # the pooled embedding is text_encoder_2's projection; six micro-conditioning ids
    assert unet["added_conditions"]["text_embeds"] == 64 and unet["added_conditions"]["time_ids"] == 6
    assert 0 < unet["added_conditions"]["macs"] < unet["macs_per_step"]
    # every transformer block of the deep stacks is its own operator: 2 x 2 down, 2 mid, 3 x 2 up
    blocks = [op["name"] for op in unet["operators"] if op["type"] == "transformer_block"]
    assert len(blocks) == 12 and "mid_block.attentions.0.transformer_blocks.1" in blocks
    assert info["total_parameters"] == sum(info["components"][n]["parameters"]
                                           for n in ("text_encoder", "text_encoder_2", "unet", "vae"))


def test_code_that_does_not_take_sdxl_says_how_to_ask_for_it(tiny_xl_dir):
    with pytest.raises(UnsupportedPipelineError, match="is an SDXL model; this command takes SD 1.x / 2.x") as err:
        load_pipeline(tiny_xl_dir)
    assert "families=('sd', 'sdxl')" in err.value.hint
    with pytest.raises(UnsupportedPipelineError, match="SDXL model"):
        load_pipeline("tiny-random-xl")


def test_a_refiner_folder_gets_its_own_reason(tiny_xl_dir, tmp_path):
    refiner = tmp_path / "refiner"
    shutil.copytree(tiny_xl_dir, refiner)
    index = json.loads((refiner / "model_index.json").read_text())
    index.update(_class_name="StableDiffusionXLImg2ImgPipeline", text_encoder=[None, None], tokenizer=[None, None])
    (refiner / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedPipelineError, match="refiner"):
        describe_model(str(refiner))


def test_an_sdxl_folder_without_its_second_text_encoder(tiny_xl_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_xl_dir, broken)
    index = json.loads((broken / "model_index.json").read_text())
    del index["text_encoder_2"]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(MissingComponentError, match="text_encoder_2.*2 text encoders"):
        load_pipeline(broken, families=ALL)


def _write_header(path, shapes: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: torch.zeros(s, dtype=torch.float16) for k, s in shapes.items()}, str(path))


def test_a_single_file_sdxl_refiner_is_refused_from_its_keys(tmp_path):
    path = tmp_path / "refiner.safetensors"
    _write_header(path, {"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
                         "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
                         "conditioner.embedders.0.model.text_projection": (8, 8)})
    with pytest.raises(UnsupportedPipelineError, match="SDXL refiner"):
        describe_model(str(path))


def test_a_single_file_whose_keys_match_no_layout_names_the_sdxl_one_too(tmp_path):
    path = tmp_path / "other.safetensors"
    _write_header(path, {"something.else": (2, 2)})
    with pytest.raises(CheckpointError, match="keys match no Stable Diffusion") as err:
        describe_model(str(path))
    assert "conditioner.embedders" in err.value.hint


# the papers' UNet sizes: SSD-1B 1.3 B and Vega 0.74 B (arXiv 2401.02677), KOALA 54 % and 69 % smaller than
# SDXL's (arXiv 2312.04005); the exact counts are those of the block layouts the released checkpoints have
STUDENTS = {"ssd-1b": 1_331_334_404, "segmind-vega": 745_225_604, "koala-700m": 782_822_724,
            "koala-1b": 1_161_184_324}


@pytest.mark.parametrize("name,expected", STUDENTS.items())
def test_sdxl_students_have_their_published_unet_sizes(name, expected):
    from edgeldm.components import build_model_from_config
    from edgeldm.zoo import ZOO
    from edgeldm.zoo.random_init import empty_weights

    with empty_weights():
        unet = build_model_from_config("diffusers", "UNet2DConditionModel", ZOO[name].folder / "unet")
    assert sum(p.numel() for p in unet.parameters()) == expected
    assert unet.config.cross_attention_dim == 2048 and unet.config.addition_embed_type == "text_time"


def test_every_zoo_architecture_has_its_own_single_file_signature():
    """A single file is matched to the first zoo architecture with its signature: SDXL's students differ from
    SDXL only in how many transformer blocks they kept, so that count is part of it."""
    from edgeldm.single_file import config_signature
    from edgeldm.zoo import ZOO

    signatures = {name: config_signature(e.folder) for name, e in ZOO.items()}
    assert len(set(signatures.values())) == len(signatures)
    assert signatures["ssd-1b"].transformer_blocks == 34 and signatures["sdxl"].transformer_blocks == 70


def test_an_sdxl_single_file_loads_bit_exact_and_info_reads_it_from_its_header(tmp_path):
    """Stability's single-file layout (``conditioner.embedders.0`` CLIP ViT-L, ``.1`` OpenCLIP with its projection,
    ``label_emb`` for the added embedding), converted by diffusers' own loader with the embedded configs."""
    from safetensors.torch import save_file

    pipe = build_preset("tiny-random-xl", seed=3)
    file = tmp_path / "xl.safetensors"
    save_file(sdxl_original_state_dict(pipe), str(file))
    info = describe_model(str(file))
    assert info["source_kind"] == "single-file" and info["family"] == "sdxl"
    assert info["components"]["text_encoder_2"]["parameters"] == sum(
        p.numel() for p in pipe.text_encoder_2.parameters())
    loaded = load_pipeline(file, families=ALL)
    assert type(loaded).__name__ == "StableDiffusionXLPipeline"
    for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
        want, got = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), name
    with pytest.raises(UnsupportedPipelineError, match="is an SDXL model"):
        load_pipeline(file)  # a stage that does not take SDXL yet


def test_generate_is_diffusers_sdxl_pipeline_image(tmp_path):
    """`edgeldm generate` (the torch reference every later hop is compared with) takes SDXL: diffusers' own
    StableDiffusionXLPipeline, its two encoders, pooled embedding and time_ids, gives the same image."""
    from PIL import Image

    from edgeldm.cli import main

    out = tmp_path / "xl.png"
    assert main(["--quiet", "generate", "tiny-random-xl", "--prompt", "a red circle", "-o", str(out), "--steps", "3",
                 "--height", "64", "--width", "64", "--seed", "1"]) == 0
    pipe = build_preset("tiny-random-xl")
    want = pipe("a red circle", num_inference_steps=3, guidance_scale=7.5, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(1)).images[0]
    got = np.asarray(Image.open(out)).astype(np.float32) / 255.0
    assert np.abs(got - want).max() <= 1.5 / 255

"""Integration: the embedded trained SDXL-architecture model `tiny-xl` loads like a user's SDXL folder, has SDXL's
layout at tiny's scale, and draws what its prompts say."""

import pytest
from safetensors.numpy import load_file

from edgeldm import load_pipeline
from edgeldm.benchmarks.evaluate import EvalConfig, evaluate_pipeline
from edgeldm.loading import resolve_source
from edgeldm.zoo import ZOO


@pytest.fixture(scope="module")
def tiny_xl():
    return load_pipeline("tiny-xl", families=("sd", "sdxl"))


def test_tiny_xl_is_a_shipped_sdxl_folder_loaded_by_the_folder_code_path(tiny_xl):
    entry = ZOO["tiny-xl"]
    kind, path = resolve_source("tiny-xl")
    assert entry.kind == "checkpoint" and kind == "checkpoint" and path == entry.folder
    assert type(tiny_xl).__name__ == "StableDiffusionXLPipeline"
    assert sum(f.stat().st_size for f in entry.folder.rglob("*") if f.is_file()) <= 40 * 2**20
    with pytest.raises(Exception, match="SDXL"):  # the public API's default takes SD 1.x / 2.x only
        load_pipeline("tiny-xl")


def test_tiny_xl_has_sdxls_layout(tiny_xl):
    unet, te, te_2 = tiny_xl.unet, tiny_xl.text_encoder, tiny_xl.text_encoder_2
    assert type(te).__name__ == "CLIPTextModel" and type(te_2).__name__ == "CLIPTextModelWithProjection"
    assert te.config.hidden_size < te_2.config.hidden_size  # as CLIP ViT-L beside OpenCLIP bigG
    assert unet.config.cross_attention_dim == te.config.hidden_size + te_2.config.hidden_size
    assert unet.config.addition_embed_type == "text_time"
    assert unet.config.down_block_types[0] == "DownBlock2D" and unet.config.up_block_types[-1] == "UpBlock2D"
    depths = unet.config.transformer_layers_per_block
    assert depths[-1] > max(depths[:-1])  # the deeper transformer stack in the innermost stage
    assert tiny_xl.tokenizer_2.pad_token == "!" and tiny_xl.config.force_zeros_for_empty_prompt
    assert type(tiny_xl.scheduler).__name__ == "EulerDiscreteScheduler"
    # tiny's VAE, unchanged: the same scenes give the same latents
    vae_file = "vae/diffusion_pytorch_model.safetensors"
    ours, tiny = load_file(ZOO["tiny-xl"].folder / vae_file), load_file(ZOO["tiny"].folder / vae_file)
    assert ours.keys() == tiny.keys() and all((ours[k] == tiny[k]).all() for k in ours)


def test_tiny_xl_draws_its_prompts(tiny_xl):
    config = EvalConfig(prompts=12, steps=8, guidance=7.5, seed=0, batch_size=6, reference_images=100)
    metrics = evaluate_pipeline(tiny_xl, config, model_name="tiny-xl").metrics
    assert metrics["images"] == 12
    # a trained model: far better than chance (shape 25 %, colour 17 %, position 20 %) even at 8 steps
    assert metrics["accuracy"]["color"] > 0.5 and metrics["accuracy"]["shape"] > 0.4


def test_size_ratios_count_both_text_encoders():
    """A recipe's size column counts the weights a model ships: SDXL's second text encoder (its largest) too."""
    from edgeldm.benchmarks.targets import folder_bytes
    from edgeldm.stages.common import weights_bytes

    folder = ZOO["tiny-xl"].folder
    parts = {c: folder_bytes(folder / c) for c in ("text_encoder", "text_encoder_2", "unet", "vae")}
    assert parts["text_encoder_2"] > parts["text_encoder"] > 0
    assert weights_bytes(folder) == sum(parts.values())

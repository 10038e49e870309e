"""#30 SDXL compressed: LD-Pruner, KD finetuning and latent consistency distillation (full and LoRA) take an SDXL
UNet with its added conditions; the chain's student exports, and the runtime draws diffusers' SDXL image of it."""

import json

import numpy as np
import pytest
import torch

import edgeldm
from edgeldm.benchmarks.quality import psnr
from edgeldm.compressor.conditioning import encode_text, unconditional, unet_text_inputs
from edgeldm.loading import load_pipeline
from edgeldm.runtimes.text2image import Text2Image

XL = ("sd", "sdxl")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """tiny-random-xl pruned (2 operators), finetuned and distilled to an LCM, a few steps each."""
    tmp = tmp_path_factory.mktemp("xl-chain")
    edgeldm.prune("tiny-random-xl", tmp / "pruned", remove=2, samples=2, steps=2, latency_repeat=0)
    edgeldm.finetune(tmp / "pruned", tmp / "finetuned", teacher="tiny-random-xl", steps=4, teacher_samples=2,
                     teacher_steps=2, batch_size=2)
    edgeldm.distill(tmp / "finetuned", tmp / "lcm", steps=4, teacher_samples=2, teacher_steps=2, batch_size=2,
                    validate_every=0)
    return tmp


def test_the_packed_conditioning_is_what_the_sdxl_pipeline_feeds_its_unet():
    """The training loops' one-tensor-per-caption conditioning unpacks to exactly diffusers' encode_prompt
    states, pooled embedding and the pipeline's time_ids; the unconditional input is zeros, as the pipeline's."""
    pipe = load_pipeline("tiny-random-xl", families=XL)
    emb = encode_text(pipe, ["a red circle", "a blue square"])
    states, _, pooled, _ = pipe.encode_prompt(["a red circle", "a blue square"], device="cpu",
                                              do_classifier_free_guidance=False)
    sample = torch.zeros(2, 4, 16, 24)
    text = unet_text_inputs(pipe.unet, emb, sample, pipe.vae_scale_factor)
    assert torch.equal(text["encoder_hidden_states"], states) and torch.equal(text["added_cond_kwargs"]["text_embeds"],
                                                                             pooled)
    time_ids = pipe._get_add_time_ids((32, 48), (0, 0), (32, 48), dtype=torch.float32,
                                      text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    assert torch.equal(text["added_cond_kwargs"]["time_ids"], time_ids.expand(2, -1))
    assert not unconditional(pipe).any()
    sd = load_pipeline("tiny-random")  # SD: the states themselves, no added conditions
    assert set(unet_text_inputs(sd.unet, encode_text(sd, ["x"]), sample, 2)) == {"encoder_hidden_states"}


def test_ld_pruner_takes_each_block_of_the_deep_stacks_and_scores_with_the_added_conditions():
    """Single transformer blocks are candidates of their own (SSD-1B / Vega's cut) beside whole attentions and
    ResNets; scoring samples through the SDXL pipeline and times UNet steps with text_embeds and time_ids."""
    from edgeldm.compressor.ldpruner import enumerate_candidates, score_candidates
    from edgeldm.compressor.score_config import ScoreConfig

    pipe = load_pipeline("tiny-random-xl", families=XL)
    cands = enumerate_candidates(pipe.unet, height=64, width=64, vae_scale_factor=pipe.vae_scale_factor)
    blocks = [c for c in cands if c.type == "transformer_block"]
    assert {c.op for c in blocks} >= {"up_blocks.0.attentions.0.transformer_blocks.1",
                                      "down_blocks.1.attentions.0.transformer_blocks.1"}
    assert all(c.macs_saved > 0 for c in blocks)
    chosen = [blocks[0], next(c for c in cands if c.type == "resnet")]
    score_candidates(pipe, chosen, ["a red circle", "a blue square"],
                     ScoreConfig(samples=2, steps=2, height=64, width=64, latency_repeat=1))
    assert all(c.score is not None and c.score > 0 and c.latency_saved_s is not None for c in chosen)


def test_the_chain_keeps_sdxl_and_its_lcm_bundle_draws_the_diffusers_image(chain, tmp_path):
    plan = json.loads((chain / "pruned" / "unet" / "edgeldm_pruning.json").read_text())
    assert len(plan["operations"]) == 2
    lcm = load_pipeline(chain / "lcm", families=XL)
    assert type(lcm).__name__ == "StableDiffusionXLPipeline" and type(lcm.scheduler).__name__ == "LCMScheduler"
    assert lcm.unet.config.time_cond_proj_dim and lcm.unet.config.addition_embed_type == "text_time"
    edgeldm.export(chain / "lcm", tmp_path / "bundle", backend=("onnx",))
    t2i = Text2Image(tmp_path / "bundle")
    assert t2i.guidance_embedding_dim and set(t2i.added_conditions) == {"text_embeds", "time_ids"}
    noise = np.random.default_rng(2).standard_normal((1, 4, 32, 32)).astype(np.float32)
    ours = t2i.decode(t2i.latents("a red circle", steps=1, guidance=8.0, initial_latents=noise))
    reference = lcm("a red circle", num_inference_steps=1, guidance_scale=8.0, latents=torch.from_numpy(noise),
                    output_type="np").images
    assert psnr(ours[None], np.clip(reference[0] * 255 + 0.5, 0, 255).astype(np.uint8)[None])[0] >= 40.0


def test_lcm_lora_distils_an_sdxl_unet(tmp_path):
    edgeldm.distill("tiny-random-xl", tmp_path / "lora", mode="lcm-lora", steps=3, teacher_samples=2,
                    teacher_steps=2, batch_size=2, validate_every=0)
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file()
    pipe = load_pipeline(tmp_path / "lora", families=XL)  # the adapter fused on load
    assert type(pipe).__name__ == "StableDiffusionXLPipeline" and type(pipe.scheduler).__name__ == "LCMScheduler"

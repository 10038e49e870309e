"""Train ``tiny-xl``: ``tiny``'s twin with Stable Diffusion XL's architecture, on the same scenes, on 2 CPU cores.

    python -m edgeldm.zoo.train_tiny_xl --out DIR [--seed 0] [--work DIR.work]

What makes it SDXL, each at ``tiny``'s scale (``tiny-random-xl`` has the same layout with random weights):

* **two text encoders** of different widths — a ``CLIPTextModel`` and a ``CLIPTextModelWithProjection`` — read
  the way SDXL reads them: both penultimate hidden states, concatenated, are the cross-attention context; the
  second's projected EOS vector is the pooled ``text_embeds``; ``tokenizer_2`` pads with "!";
* **the UNet's layout**: no attention in the outer stage, a deeper transformer stack in the innermost one, linear
  projections, the ``text_time`` added embedding (pooled text + the micro-conditioning ``time_ids``);
* **SDXL's pipeline**: ``StableDiffusionXLPipeline`` with ``EulerDiscreteScheduler`` and
  ``force_zeros_for_empty_prompt`` (caption dropout trains with zeros, which is what the pipeline samples with).

The VAE is ``tiny``'s, unchanged: SDXL kept SD's VAE architecture, and the scenes are the same, so the latents
are too. The text encoders are pretrained to name the caption's attributes from exactly what the UNet reads
(the penultimate EOS state, and the pooled projection) and then frozen; the UNet is trained by ``train_tiny``'s
loop, conditioned through :mod:`edgeldm.compressor.conditioning` — diffusers' own ``encode_prompt``, the code
finetune and distill use on SDXL. Every stage is checkpointed under ``--work`` and resumes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .train_tiny import (SD_SCHEDULE, TinyTrainingConfig, _Captioner, encode_latents, save_folder, start_run,
                         train_text_encoder, train_unet)


@dataclass(frozen=True)
class TinyXLTrainingConfig(TinyTrainingConfig):
    vae_from: str = "tiny"  # the zoo entry whose VAE is reused; the vae_* fields above are not used
    text_hidden: int = 32  # text_encoder (CLIP ViT-L's role); the second is wider, as in SDXL
    text_layers: int = 3
    text_2_hidden: int = 64  # text_encoder_2 (OpenCLIP ViT-bigG's role), its projection as wide
    transformer_layers_per_block: tuple[int, ...] = (1, 1, 3)
    attention_heads: tuple[int, ...] = (2, 4, 4)
    addition_time_embed_dim: int = 8
    unet_steps: int = 5000


def _eos_state(layer: int):
    """The EOS token's vector of hidden layer ``layer`` (the highest id in CLIP's vocabulary is the EOS token)."""

    def readout(out):
        states = out.hidden_states[layer]
        return states[range(len(states)), out.eos_positions]

    return readout


def build_text_encoders(cfg: TinyXLTrainingConfig):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def config(width):
        return CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=4 * width,
                              num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
                              max_position_embeddings=77, hidden_act="gelu", projection_dim=width,
                              bos_token_id=0, eos_token_id=2, pad_token_id=1)

    return CLIPTextModel(config(cfg.text_hidden)), CLIPTextModelWithProjection(config(cfg.text_2_hidden))


def build_unet(cfg: TinyXLTrainingConfig):
    from diffusers import UNet2DConditionModel

    width_2 = cfg.text_2_hidden
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers_per_block,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=cfg.transformer_layers_per_block, attention_head_dim=cfg.attention_heads,
        use_linear_projection=True, cross_attention_dim=cfg.text_hidden + width_2, norm_num_groups=cfg.unet_norm_groups,
        addition_embed_type="text_time", addition_time_embed_dim=cfg.addition_time_embed_dim,
        projection_class_embeddings_input_dim=6 * cfg.addition_time_embed_dim + width_2,
    )


class _WithEos:
    """Calls a CLIP text model with every hidden state and notes where each row's EOS token is."""

    def __init__(self, te):
        self.te = te

    def __call__(self, input_ids, **_):
        out = self.te(input_ids=input_ids, output_hidden_states=True)
        out.eos_positions = input_ids.argmax(-1)
        return out

    def __getattr__(self, name):  # parameters(), eval(), state_dict() ... of the wrapped model
        return getattr(self.te, name)


class _SDXLText:
    """SDXL's conditioning for ``train_unet``: diffusers' ``encode_prompt`` through the pipeline being trained
    (packed as :mod:`edgeldm.compressor.conditioning` does for finetune and distill)."""

    def __init__(self, pipe, captioner: _Captioner):
        self.pipe, self.captioner = pipe, captioner

    def encode(self, captions: list[str]):
        from ..compressor.conditioning import encode_text

        return encode_text(self.pipe, captions)

    def unconditional(self):
        from ..compressor.conditioning import unconditional

        return unconditional(self.pipe)

    def unet_kwargs(self, cond, noisy) -> dict:
        from ..compressor.conditioning import unet_text_inputs

        return unet_text_inputs(self.pipe.unet, cond, noisy, self.pipe.vae_scale_factor)


def build_pipeline(cfg: TinyXLTrainingConfig, vae, te, te_2, tokenizer, tokenizer_2, unet):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    scheduler = EulerDiscreteScheduler(**SD_SCHEDULE, steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True)


FIELDS = ("text_steps", "unet_steps", "unet_batch", "train_images", "threads")


def main(argv=None) -> int:
    run = start_run("edgeldm.zoo.train_tiny_xl", __doc__, TinyXLTrainingConfig, FIELDS, argv)
    if run is None:
        return 1
    cfg, out, work, log, args = run

    from diffusers import AutoencoderKL

    from ..calibration.scenes import make_scenes
    from . import get_zoo_entry
    from .clip_bpe import clip_tokenizer

    data = make_scenes(cfg.train_images, seed=cfg.seed, split="train")
    log(f"data: {len(data.images)} training scenes")
    vae = AutoencoderKL.from_pretrained(get_zoo_entry(cfg.vae_from).folder / "vae").eval().requires_grad_(False)
    lat_mean, lat_std, _ = encode_latents(vae, data.images, work, log)
    scaling_factor = vae.config.scaling_factor  # the VAE's own: tiny-xl ships tiny's VAE unchanged

    tokenizer = clip_tokenizer({"pad_token": "<|endoftext|>"})
    tokenizer_2 = clip_tokenizer({"pad_token": "!"})
    te, te_2 = build_text_encoders(cfg)
    penultimate = _eos_state(-2)
    te = train_text_encoder(cfg, _Captioner(tokenizer, data.scenes, cfg.seed), data.labels, work, log, te=_WithEos(te),
                            name="text_encoder", readouts=[(cfg.text_hidden, penultimate)])
    te_2 = train_text_encoder(cfg, _Captioner(tokenizer_2, data.scenes, cfg.seed + 1), data.labels, work, log,
                              te=_WithEos(te_2), name="text_encoder_2",
                              readouts=[(cfg.text_2_hidden, penultimate),
                                        (cfg.text_2_hidden, lambda out: out.text_embeds)])

    pipe = build_pipeline(cfg, vae, te, te_2, tokenizer, tokenizer_2, build_unet(cfg))
    train_unet(cfg, pipe.unet, _SDXLText(pipe, _Captioner(tokenizer, data.scenes, cfg.seed)), lat_mean, lat_std,
               scaling_factor, work, log)
    save_folder(cfg, pipe, out, args.overwrite, log, text_encoders=("text_encoder", "text_encoder_2"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

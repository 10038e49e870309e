"""Text conditioning for the training loops (``finetune``, ``distill``), whatever the model family.

The loops index, drop, repeat and concatenate caption embeddings as one tensor per caption. SD's is the text
encoder's states; SDXL's UNet also takes the pooled text embedding and the micro-conditioning ``time_ids``. So
that the loops stay family-neutral, an SDXL caption's pooled embedding travels as one extra row after its states
(both zero-padded to a common width): every tensor operation of the loops carries it along, and
:func:`unet_text_inputs` unpacks it — and builds ``time_ids`` from the sample's size — right at the UNet call.
The prompts are encoded by diffusers' own ``encode_prompt`` (SDXL: both encoders' penultimate states,
concatenated, and the second's projection).
"""

from __future__ import annotations

import torch

from ..io_spec import added_condition_shapes, micro_conditioning


def _config(unet):
    return getattr(unet, "config", None) or unet.module.config  # a DDP-wrapped student under accelerate


def packs_pooled(unet_config) -> bool:
    """Does this UNet take SDXL's added conditions (and so the packed pooled row)?"""
    return bool(added_condition_shapes(unet_config))


def encode_text(pipe, captions: list[str], *, batch: int = 256) -> torch.Tensor:
    """One conditioning tensor per caption (``(N, tokens, width)``; SDXL: its pooled embedding as the last row)."""
    pack = packs_pooled(pipe.unet.config)
    out = []
    with torch.no_grad():
        for i in range(0, len(captions), batch):
            chunk = captions[i:i + batch]
            if not pack:
                states, _ = pipe.encode_prompt(chunk, pipe.device, 1, False)
                out.append(states.cpu())
                continue
            states, _, pooled, _ = pipe.encode_prompt(chunk, device=pipe.device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
            out.append(_pack(states.cpu(), pooled.cpu()))
    return torch.cat(out).float()


def unconditional(pipe) -> torch.Tensor:
    """The unconditional input (1, tokens, width): the empty prompt, or zeros where the pipeline samples with
    zeros for an empty negative prompt (SDXL's ``force_zeros_for_empty_prompt``)."""
    empty = encode_text(pipe, [""])
    return torch.zeros_like(empty) if pipe.config.get("force_zeros_for_empty_prompt") else empty


def _pack(states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    width = max(states.shape[-1], pooled.shape[-1])
    states = torch.nn.functional.pad(states, (0, width - states.shape[-1]))
    pooled = torch.nn.functional.pad(pooled, (0, width - pooled.shape[-1]))
    return torch.cat([states, pooled[:, None]], dim=1)


def unet_text_inputs(unet, emb: torch.Tensor, sample: torch.Tensor, vae_scale_factor: int) -> dict:
    """The UNet's text keyword arguments for a batch of conditioning rows ``emb`` and its ``sample``:
    ``encoder_hidden_states`` and, for SDXL, ``added_cond_kwargs`` (``text_embeds`` and ``time_ids`` of the
    sample's image size: original = target, no crop — what the SDXL pipeline sends)."""
    config = _config(unet)
    if not packs_pooled(config):
        return {"encoder_hidden_states": emb}
    pooled_width = added_condition_shapes(config)["text_embeds"]
    h, w = (s * vae_scale_factor for s in sample.shape[-2:])
    time_ids = torch.tensor([micro_conditioning(h, w)], dtype=emb.dtype, device=emb.device).expand(len(emb), -1)
    return {"encoder_hidden_states": emb[:, :-1, :config.cross_attention_dim],
            "added_cond_kwargs": {"text_embeds": emb[:, -1, :pooled_width], "time_ids": time_ids}}

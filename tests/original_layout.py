"""Test helper: a diffusers Stable Diffusion pipeline's weights in the original (CompVis / LDM) single-file layout.

Users hold checkpoints in this layout (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.*``); no library writes it, so the tests build such files themselves from the presets'
seeded weights, and the product reads them back with diffusers' own single-file loader. The mapping follows
the LDM module tree: UNet ``input_blocks`` / ``middle_block`` / ``output_blocks`` with ``in_layers`` /
``out_layers`` / ``emb_layers`` ResNets, VAE ``down`` / ``mid`` / ``up`` with 1x1-conv attention, and the
CLIP text model under ``cond_stage_model.transformer`` (SD 1.x).
"""

from __future__ import annotations

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_VAE_RESNET = (("conv_shortcut", "nin_shortcut"),)
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename(key: str, pairs) -> str:
    for new, old in pairs:
        key = key.replace(f".{new}.", f".{old}.")
    return key


def _unet_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) of every block of the UNet, longest first when applied."""
    n = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    out = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
           ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2.")]
    for i in range(levels):
        for j in range(n):
            index = 1 + i * (n + 1) + j
            out.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{index}.0."))
            out.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{index}.1."))
        if i < levels - 1:
            out.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (n + 1)}.0.op."))
        for j in range(n + 1):
            index = i * (n + 1) + j
            out.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{index}.0."))
            out.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{index}.1."))
        if i < levels - 1:
            has_attention = "CrossAttn" in config["up_block_types"][i]
            out.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (n + 1) + n}.{2 if has_attention else 1}."))
    out.append(("mid_block.attentions.0.", "middle_block.1."))
    out += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.") for j in range(2)]
    return sorted(out, key=lambda p: -len(p[0]))


def unet_state_dict(state: dict, config) -> dict:
    prefixes = _unet_prefixes(config)
    out = {}
    for key, value in state.items():
        new = next((old + key[len(pre):] for pre, old in prefixes if key.startswith(pre)), None)
        if new is None:
            raise KeyError(f"no LDM name for UNet weight {key}")
        if ".resnets." in key or key.startswith("mid_block.resnets"):
            new = _rename("." + new, _RESNET)[1:]
        out["model.diffusion_model." + new] = value
    return out


def vae_state_dict(state: dict, config) -> dict:
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        new = key
        for part in ("encoder", "decoder"):
            new = new.replace(f"{part}.conv_norm_out.", f"{part}.norm_out.")
            new = new.replace(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.")
            new = new.replace(f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.")
            new = new.replace(f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.")
        for i in range(levels):
            new = new.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            new = new.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            # the decoder's levels count from the lowest resolution in diffusers, from the highest in LDM
            new = new.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block.")
            new = new.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")
        new = _rename("." + new, _VAE_RESNET)[1:]
        if ".mid.attn_1." in new:
            new = _rename("." + new, _VAE_ATTENTION)[1:]
            if new.endswith(".weight") and value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        out["first_stage_model." + new] = value
    return out


def text_encoder_state_dict(state: dict) -> dict:
    """SD 1.x: the transformers CLIP text model as it is, under ``cond_stage_model.transformer``."""
    return {"cond_stage_model.transformer." + k: v for k, v in state.items() if not k.endswith("position_ids")}


def original_state_dict(pipe, *, open_clip: bool | None = None) -> dict:
    """The whole pipeline's weights in the single-file layout: SD 1.x (CLIP), or SD 2.x (OpenCLIP; the default
    for a 1024-wide text encoder, as SD 2.x has)."""
    out = unet_state_dict(pipe.unet.state_dict(), pipe.unet.config)
    out.update(vae_state_dict(pipe.vae.state_dict(), pipe.vae.config))
    if open_clip is None:
        open_clip = pipe.text_encoder.config.hidden_size == 1024
    if open_clip:
        # diffusers drops exactly resblocks.23 (SD 2.x's unused 24th layer): a smaller tower is written as it is
        out.update(open_clip_state_dict(pipe.text_encoder,
                                        final_layer=pipe.text_encoder.config.num_hidden_layers == 23))
    else:
        out.update(text_encoder_state_dict(pipe.text_encoder.state_dict()))
    return {k: v.contiguous() for k, v in out.items()}


_OPEN_CLIP = "cond_stage_model.model."
_OPEN_CLIP_LAYER = (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
                    ("self_attn.out_proj", "attn.out_proj"))


def open_clip_state_dict(text_encoder, *, final_layer: bool = True, prefix: str = _OPEN_CLIP) -> dict:
    """SD 2.x: the OpenCLIP text tower under ``cond_stage_model.model`` - one fused ``in_proj`` per attention,
    ``ln_1`` / ``ln_2`` / ``c_fc`` / ``c_proj``, and a ``text_projection``. The real files hold all 24 OpenCLIP
    layers while SD 2.x (and diffusers' converter, which drops ``resblocks.23``) uses the penultimate one's output:
    ``final_layer`` writes that unused last layer too, as the 24-layer files do."""
    import torch

    state = {k: v for k, v in text_encoder.state_dict().items() if not k.endswith("position_ids")}
    out = {prefix + "positional_embedding": state.pop("text_model.embeddings.position_embedding.weight"),
           prefix + "token_embedding.weight": state.pop("text_model.embeddings.token_embedding.weight"),
           prefix + "ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
           prefix + "ln_final.bias": state.pop("text_model.final_layer_norm.bias")}
    layers = text_encoder.config.num_hidden_layers
    for i in range(layers):
        pre, new = f"text_model.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[new + f"attn.in_proj_{kind}"] = torch.cat([state.pop(pre + f"self_attn.{p}_proj.{kind}")
                                                          for p in ("q", "k", "v")])
            for old, ldm in _OPEN_CLIP_LAYER:
                out[new + f"{ldm}.{kind}"] = state.pop(pre + f"{old}.{kind}")
    if final_layer:
        last = f"{prefix}transformer.resblocks.{layers - 1}."
        out.update({k.replace(last, f"{prefix}transformer.resblocks.{layers}."): v.clone()
                    for k, v in list(out.items()) if k.startswith(last)})
    hidden = text_encoder.config.hidden_size
    projection = state.pop("text_projection.weight", None)  # SDXL pools through it; OpenCLIP stores it transposed
    out[prefix + "text_projection"] = torch.eye(hidden) if projection is None else projection.T.contiguous()
    if state:
        raise KeyError(f"no OpenCLIP name for text encoder weights {sorted(state)[:3]}")
    return out


#: SDXL's single files: the CLIP ViT-L tower (transformers naming) and the OpenCLIP ViT-bigG one
_SDXL_CLIP, _SDXL_OPEN_CLIP = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
#: the added text-and-time embedding is LDM's ``label_emb``
_ADD_EMBEDDING = (("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."))


def sdxl_original_state_dict(pipe) -> dict:
    """An SDXL pipeline's weights in the single-file layout of Stability's ``sd_xl_base_1.0.safetensors``."""
    unet = dict(pipe.unet.state_dict())
    added = {}
    for new, old in _ADD_EMBEDDING:
        added.update({"model.diffusion_model." + old + k[len(new):]: unet.pop(k) for k in list(unet)
                      if k.startswith(new)})
    out = unet_state_dict(unet, pipe.unet.config)
    out.update(added)
    out.update(vae_state_dict(pipe.vae.state_dict(), pipe.vae.config))
    out.update({_SDXL_CLIP + k: v for k, v in pipe.text_encoder.state_dict().items() if not k.endswith("position_ids")})
    out.update(open_clip_state_dict(pipe.text_encoder_2, final_layer=False, prefix=_SDXL_OPEN_CLIP))
    return {k: v.contiguous() for k, v in out.items()}

"""The pipeline a client follows, stated in the manifest (``edgeldm.json`` key ``generation``).

The graphs and their I/O say what each component computes; this says how an app chains them — tokenization
and the unconditional input, which text-encoder output feeds the UNet, the guidance rule, the sampler and its
parameters, the noise generator and its draw order, the latent scaling direction, the pixel conversions and the
order of calls per mode — so that a client in Swift, Kotlin or JavaScript needs nothing but the bundle and
``docs/bundle-format.md`` (which spells out every rule named here). Built from the manifest's own facts, so
every writer of a manifest (export, quantize) states the same contract the runtime follows. Torch-free.
"""

from __future__ import annotations

from .runtimes.noise import DEFAULT_NOISE, NOISE_SPEC

#: the rules' names; a change of any rule's arithmetic gets a new name (and a format version note)
GUIDANCE_EMBEDDING_RULE = "guidance-scale-embedding/v1"
TOKENIZER_RULE = "clip-bpe-padded/v1"
PIXELS_RULE = "round-half-up-uint8/v1"
DOC = "docs/bundle-format.md"


def _io_names(manifest: dict, component: str) -> tuple[list[str], list[str]]:
    io = manifest["components"][component]["io"]
    return [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]


def _sampler(manifest: dict) -> dict:
    from .runtimes.samplers.registry import sampler_from_manifest

    try:
        sampler = sampler_from_manifest(manifest)
    except ValueError:  # a scheduler without a numpy sampler: the client must bring its own
        return {"name": None, "diffusers_class": manifest["scheduler"]["class"], "rule": None, "parameters": {}}
    return {"name": sampler.name, "diffusers_class": manifest["scheduler"]["class"],
            "rule": f"{DOC}#sampler-{sampler.name}", "parameters": sampler.config.to_dict()}


def family_of_manifest(manifest: dict):
    """The bundle's model family (bundles before format 4 hold SD 1.x / 2.x models and do not say)."""
    from .families import FAMILIES

    return FAMILIES[manifest.get("family", "sd")]


def text_encoders(manifest: dict) -> list[dict]:
    """Every text encoder of the bundle in the order their states are concatenated: its tokenizer, the output
    the UNet reads (the last hidden state, or SDXL's penultimate layer ``hidden_states.N-1``) and, for the
    encoder whose pooled embedding the UNet takes as well, that output (``pooled_output``)."""
    family = family_of_manifest(manifest)
    encoders = []
    for component, tokenizer in zip(family.text_encoders, family.tokenizers):
        _, outputs = _io_names(manifest, component)
        if family.text_layer == -1:
            output = "last_hidden_state"
        else:  # hidden_states.0 (the embeddings) … hidden_states.N (the last layer)
            states = [o for o in outputs if o.startswith("hidden_states.")]
            output = states[family.text_layer]
        tok = manifest[tokenizer]
        entry = {"component": component, "tokenizer": f"{tok['folder']}/tokenizer.json",
                 "max_length": tok["model_max_length"], "pad_token_id": tok.get("pad_token_id"), "output": output}
        if component == family.pooled_from:
            entry["pooled_output"] = "text_embeds" if "text_embeds" in outputs else "pooler_output"
        encoders.append(entry)
    return encoders


def zeros_for_empty_negative(manifest: dict) -> bool:
    """Is the unconditional input zeros when no negative prompt is given (SDXL's force_zeros_for_empty_prompt)?"""
    return bool((manifest.get("pipeline_config") or {}).get("force_zeros_for_empty_prompt"))


def added_conditions(manifest: dict) -> dict:
    """The UNet's inputs besides the text states (SDXL: the pooled text embedding and the micro-conditioning),
    each with the rule that makes it; empty for SD 1.x / 2.x."""
    unet_in = {t["name"] for t in manifest["components"]["unet"]["io"]["inputs"]}
    added = {}
    if "text_embeds" in unet_in:
        pooled = next(e for e in text_encoders(manifest) if "pooled_output" in e)
        added["text_embeds"] = {
            "unet_input": "text_embeds",
            "value": f"{pooled['component']}(input_ids=ids).{pooled['pooled_output']}, per batch entry like the "
                     "states (zeros for the unconditional entry when the states are zeros)"}
    if "time_ids" in unet_in:
        added["time_ids"] = {
            "unet_input": "time_ids",
            "value": "float32 [height, width, 0, 0, height, width] per batch entry: the original size, the crop's "
                     "top-left corner and the target size, in image pixels (SDXL's micro-conditioning)"}
    return added


def generation_contract(manifest: dict) -> dict:
    """The ``generation`` section for ``manifest`` (which must hold image, defaults, scheduler, tokenizer and
    the components' I/O)."""
    image, comps = manifest["image"], manifest["components"]
    _, (unet_out, *_) = _io_names(manifest, "unet")
    unet_in = {t["name"]: t for t in comps["unet"]["io"]["inputs"]}
    latent_channels = image["latent_channels"]
    unet_channels = unet_in["sample"]["shape"][1]
    inpainting = unet_channels == 2 * latent_channels + 1
    embedded = "timestep_cond" in unet_in
    latent_shape = ["1", str(latent_channels), "height / vae_scale_factor", "width / vae_scale_factor"]

    guidance = {"scale_default": manifest["defaults"]["guidance"]}
    if embedded:
        guidance.update(rule="embedded", unet_input="timestep_cond", embedding=GUIDANCE_EMBEDDING_RULE,
                        embedding_dim=unet_in["timestep_cond"]["shape"][1], embedding_of="guidance - 1", batch=["conditional"])
    else:
        guidance.update(rule="classifier-free", applies_when="guidance > 1",
                        batch=["unconditional", "conditional"],
                        combine="out = out[unconditional] + guidance * (out[conditional] - out[unconditional])",
                        otherwise="batch of one, conditional only")

    encoders = text_encoders(manifest)
    added = added_conditions(manifest)
    if len(encoders) == 1:
        tokenize = "ids = tokenize([unconditional, prompt] if classifier-free guidance applies else [prompt])"
        hidden = f"hidden = {encoders[0]['component']}(input_ids=ids).{encoders[0]['output']}"
    else:
        tokenize = ("for each encoder e: ids_e = e's tokenizer([unconditional, prompt] if classifier-free guidance "
                    "applies else [prompt])")
        hidden = "hidden = concat(" + ", ".join(f"{e['component']}(input_ids=ids_e).{e['output']}"
                                                for e in encoders) + ", last axis)"
    for e in encoders:
        if "pooled_output" in e:
            hidden += f"; pooled = {e['component']}(input_ids=ids_e).{e['pooled_output']}"
    if added:
        hidden += "; " + ", ".join(f"{name} as text.added_conditions says" for name in added)
    unet_extra = "".join(f", {name}={'pooled' if name == 'text_embeds' else name}" for name in added)
    modes = {"text-to-image": [
        tokenize,
        hidden,
        f"latents = noise({', '.join(latent_shape)}) * init_noise_sigma",
        "for t in sampler timesteps: x = scale_model_input(latents, t); batch x as guidance.batch says; "
        f"out = unet(sample=x, timestep=float32(t), encoder_hidden_states=hidden{unet_extra}"
        f"{', timestep_cond=embedding' if embedded else ''}).{unet_out}; combine by guidance; "
        "eps = noise(latents shape) if the sampler needs noise at this step; latents = step(out, t, latents, eps)",
        "pixels = to_pixels(vae_decoder(latent_sample=latents / scaling_factor).sample)",
    ]}
    has_encoder = "vae_encoder" in comps
    if has_encoder:
        encode = ("clean = encode(image): p = vae_encoder(sample=pixel / 127.5 - 1).latent_parameters; "
                  "mean, logvar = split(p, 2, channel axis); "
                  "clean = (mean + exp(0.5 * clip(logvar, -30, 20)) * noise(mean shape)) * scaling_factor")
        if not inpainting:
            modes["image-to-image"] = [
                modes["text-to-image"][0], modes["text-to-image"][1], encode,
                "timesteps = the sampler's img2img truncation at strength; start = noise(latent shape); "
                "latents = add_noise(clean, start, first kept timestep)",
                "denoise over the kept timesteps as text-to-image does", modes["text-to-image"][-1]]
        modes["inpainting"] = [
            modes["text-to-image"][0], modes["text-to-image"][1],
            "repaint = mask >= 0.5 (white = repaint), (1, 1, height, width); latent_mask = repaint[::f, ::f]",
            ("masked = encode(image * (repaint < 0.5)); extra = concat(latent_mask, masked) on channels; "
             "latents as image-to-image (pure noise * init_noise_sigma at strength 1, with no encode of the "
             "image); the UNet sample is concat(scale_model_input(latents), extra)") if inpainting else
            (f"{encode}; start = noise(latent shape); latents as image-to-image; after each step latents = "
             "(1 - latent_mask) * add_noise(clean, start, next timestep) + latent_mask * latents "
             "(clean itself after the last step)"),
            "denoise as text-to-image does", modes["text-to-image"][-1]]

    first = encoders[0]
    text = {
        "tokenizer": first["tokenizer"], "rule": TOKENIZER_RULE,
        "max_length": first["max_length"], "pad_token_id": first["pad_token_id"],
        "unconditional": "the negative prompt, else the empty string, tokenized the same way",
        "encoder_input": "input_ids", "encoder_output": first["output"],
        "unet_input": "encoder_hidden_states", "encoders": encoders,
    }
    if len(encoders) > 1:
        text["combine"] = "encoder_hidden_states = concat(each encoder's output, in encoders order, last axis)"
    if zeros_for_empty_negative(manifest):
        text["unconditional"] = ("the negative prompt tokenized the same way; with no negative prompt, zeros of "
                                 "the conditional states' and pooled embedding's shapes (diffusers' "
                                 "force_zeros_for_empty_prompt)")
    if added:
        text["added_conditions"] = added

    contract = {
        "doc": DOC,
        "text": text,
        "guidance": guidance,
        "sampler": {**_sampler(manifest), "steps_default": manifest["defaults"]["steps"],
                    "timestep_input": "timestep, a float32 scalar: the sampler's timestep value"},
        "noise": {"generator": NOISE_SPEC[DEFAULT_NOISE], "rule": f"{DOC}#noise", "seed_range": [0, 2**64 - 1],
                  "order": "one stream per image; draws in the order the mode's calls make them"},
        "latents": {"shape": latent_shape, "scaling_factor": image["scaling_factor"],
                    "to_decoder": "latents / scaling_factor", "from_encoder": "sample * scaling_factor",
                    "unet_channels": unet_channels, "inpainting_unet": inpainting},
        "decoder": {"input": "latent_sample", "output": "sample", "range": [-1.0, 1.0], "layout": "NCHW",
                    "to_pixels": PIXELS_RULE},
        "modes": modes,
    }
    if has_encoder:
        contract["encoder"] = {"input": "sample", "output": "latent_parameters", "range": [-1.0, 1.0],
                               "from_pixels": "x = uint8 / 127.5 - 1, HWC -> NCHW"}
    return contract

"""``Text2Image``: prompt (and, for image-to-image, an input image) -> image over an exported bundle, without
torch or diffusers.

Steps mirror diffusers' pipelines: 1. tokenize, 2. encode the prompt (and the negative / empty prompt
for classifier-free guidance), 3. draw the initial latents, 4. denoise with a numpy sampler — the
conditional and unconditional halves in *one* UNet call — or, for an LCM bundle, with the guidance
scale fed as an embedding (``timestep_cond``), 5. decode with the VAE. Sessions, the sampler and the
manifest are shared and never mutated by a call, so one ``Text2Image`` serves several threads.

Image-to-image (``image=``, ``strength=``) follows diffusers' img2img pipelines: the image is encoded by the
bundle's VAE encoder (a draw from its posterior), noised to the timestep where the truncated schedule starts
(the sampler's ``img2img_start`` / ``add_noise``: LCM shortens its schedule, the others skip its first part),
then denoised as above. Inpainting (``mask=``, white = repaint) follows diffusers' inpainting pipeline: an
inpainting UNet (9 input channels) takes the latent mask and the masked image's latents beside the latents at
every call; an ordinary UNet gets the known region blended back into the latents after every step.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np

from ..arguments import check_guidance, check_image_size, check_positive_int, check_seed, check_strength, check_text
from ..backends import get_backend
from ..errors import EdgeLDMError, LatentsOverflowError
from ..io_spec import micro_conditioning
from ..manifest import BundleError, bundle_file, check_bundle, component_io, graph_file, load_manifest, \
    session_config
from .backends import BACKENDS, open_session
from .noise import DEFAULT_NOISE, noise_source
from .samplers.registry import sampler_from_manifest
from .tokenizer import PromptTokenizer
from .vae_tiling import tiled_apply

logger = logging.getLogger("edgeldm")

__all__ = ["COMPONENTS", "Text2Image", "guidance_scale_embedding"]
#: the graphs every bundle has besides its family's text encoders (SDXL: text_encoder_2 too)
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
#: the VAE tile of low-memory mode, in latent pixels (256 image pixels for SD's factor 8; diffusers tiles at 64)
LOW_MEMORY_VAE_TILE = 32
MIN_VAE_TILE = 4
#: opened when the bundle has them: the VAE encoder serves image-to-image
OPTIONAL_COMPONENTS = ("vae_encoder",)


def guidance_scale_embedding(w: np.ndarray, dim: int) -> np.ndarray:
    """Sinusoidal embedding of the guidance scale, as diffusers' LCM pipeline computes it (w is ω − 1)."""
    w = np.asarray(w, dtype=np.float32) * 1000.0
    half = dim // 2
    # float32 throughout, as diffusers computes it: sin of arguments up to ~10^4 amplifies any rounding
    step = np.log(np.float32(10000.0)) / np.float32(half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * -step)
    emb = w[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(emb), np.cos(emb)], axis=1)
    if dim % 2 == 1:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb.astype(np.float32)


def _sampler(manifest: dict, name: str | None):
    from .samplers import SAMPLERS

    try:
        return sampler_from_manifest(manifest, name)
    except ValueError as exc:
        raise EdgeLDMError(str(exc), hint=f"choose a sampler: {', '.join(sorted(SAMPLERS))}") from None


class Text2Image:
    def __init__(self, bundle: str | Path, backend: str = "onnx", *, verify: bool = True, sampler: str | None = None,
                 low_memory: bool = False, vae_tile: int | None = None, **session_options):
        """``low_memory`` opens each component on first use and releases it when its phase ends
        (:mod:`.low_memory`), and tiles the VAE at 32 latent pixels unless ``vae_tile`` says otherwise;
        ``vae_tile`` (latent pixels a side) tiles the VAE decode and encode of larger images (:mod:`.vae_tiling`)."""
        from ..contract import added_conditions, family_of_manifest, text_encoders, zeros_for_empty_negative

        self.bundle = Path(bundle)
        self.manifest = load_manifest(self.bundle)
        # what the family's text conditioning takes (the contract's own reading: docs/bundle-format.md)
        self.text_encoders = text_encoders(self.manifest)
        self.added_conditions = tuple(added_conditions(self.manifest))
        self.zero_negative = zeros_for_empty_negative(self.manifest)
        required = (*family_of_manifest(self.manifest).text_encoders, *COMPONENTS[1:])
        if backend not in BACKENDS:
            raise EdgeLDMError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
        # the torch reference runs the source model's modules, so every bundle "has" it
        lacking = [] if backend == "torch" else \
            [c for c in required if backend not in self.manifest["components"].get(c, {}).get("backends", {})]
        if lacking:
            have = sorted({b for c in self.manifest["components"].values() for b in c["backends"]})
            raise BundleError(f"bundle {self.bundle} has no {backend} graph for {', '.join(lacking)}",
                              hint=f"it has: {', '.join(have) or 'nothing'}; re-export with --backend {backend}")
        check_bundle(self.bundle, self.manifest, backends=[backend], verify=verify)
        gate = (self.manifest.get("quantization") or {}).get("gate") or {}
        if gate.get("passed") is False:
            logger.warning("%s was kept although it failed its quantization floor (--keep-failed): %s", self.bundle,
                           "; ".join(gate.get("failures", [])))
        self.backend = backend
        listed = self.manifest["components"]
        components = required + tuple(c for c in OPTIONAL_COMPONENTS if c in listed and (
            backend == "torch" or backend in listed[c].get("backends", {})))
        self.ios = {c: component_io(self.manifest, c) for c in components}
        if backend == "torch":
            session_options.setdefault("source", self.manifest["source"]["model"])
            graphs = {c: self.bundle / c for c in components}  # the torch session loads the source model
        else:  # only graphs the manifest lists, inside the bundle (verified above)
            graphs = {c: graph_file(self.bundle, self.manifest, c, backend) for c in components}
        self.sampler = _sampler(self.manifest, sampler)
        self.low_memory = bool(low_memory)
        self.vae_tile = self._check_vae_tile(vae_tile) if vae_tile is not None else \
            (LOW_MEMORY_VAE_TILE if self.low_memory and not self.manifest["image"].get("static") else None)
        if self.low_memory:
            session_options = {**session_options, **dict(get_backend(backend).low_memory_options)}
        openers = {c: partial(open_session, backend, graphs[c], self.ios[c], **session_options,
                              **session_config(self.manifest, c, backend)) for c in components}
        if self.low_memory:
            from .low_memory import LazySession

            # the sessions a caller may wrap (timers, recorders) call these; release() reaches them here
            self._lazy = {c: LazySession(c, open_) for c, open_ in openers.items()}
            self.sessions = dict(self._lazy)
        else:
            self._lazy = {}
            self.sessions = {c: open_() for c, open_ in openers.items()}
        self.tokenizers = {e["component"]: PromptTokenizer(bundle_file(self.bundle, e["tokenizer"]).parent,
                                                           max_length=e["max_length"], pad_token_id=e["pad_token_id"])
                           for e in self.text_encoders}
        self.image = self.manifest["image"]
        self.defaults = self.manifest["defaults"]
        unet_inputs = {t.name: t for t in self.ios["unet"].inputs}
        self.guidance_embedding_dim = unet_inputs["timestep_cond"].shape[1] if "timestep_cond" in unet_inputs else None
        self.unet_batch = unet_inputs["sample"].shape[0]  # an int for static bundles
        # 9 for an inpainting UNet: latents, mask and masked-image latents side by side
        self.unet_in_channels = unet_inputs["sample"].shape[1]

    # -- helpers ---------------------------------------------------------------------------------

    def _check_vae_tile(self, tile) -> int:
        tile = check_positive_int(tile, "--vae-tile")
        if tile < MIN_VAE_TILE:
            raise EdgeLDMError(f"--vae-tile {tile}: a tile must be at least {MIN_VAE_TILE} latent pixels a side",
                               hint=f"try {LOW_MEMORY_VAE_TILE} (256 image pixels at SD's VAE factor 8)")
        if self.manifest["image"].get("static"):
            raise EdgeLDMError(f"--vae-tile: {self.bundle} was exported with static shapes; its VAE takes one size",
                               hint="re-export without --static to tile the VAE")
        return tile

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the VAE factor times the UNet's downsamplings."""
        if "size_multiple" in self.image:
            return int(self.image["size_multiple"])
        import json

        from ..components import unet_downsampling

        # format 1 bundles do not state it: the UNet's config does (listed, and verified with the bundle)
        config = json.loads(bundle_file(self.bundle, "unet/config.json").read_text(encoding="utf-8"))
        return self.image["vae_scale_factor"] * unet_downsampling(config)

    def _check_size(self, height: int, width: int) -> None:
        check_image_size(height, width, self.size_multiple,
                         why=f"VAE factor {self.image['vae_scale_factor']} x the UNet's downsamplings")
        if self.image.get("static") and (height, width) != (self.image["height"], self.image["width"]):
            raise EdgeLDMError(f"this bundle was exported with static shapes for {self.image['height']}x"
                               f"{self.image['width']}; asked for {height}x{width}",
                               hint="re-export without --static, or with --height/--width of this size")

    def _encode_with(self, encoder: dict, prompts: list[str]) -> dict[str, np.ndarray]:
        """One text encoder's outputs for ``prompts`` (per prompt when its graph takes a fixed batch)."""
        component = encoder["component"]
        ids = self.tokenizers[component](prompts)
        wanted = [encoder["output"], *([encoder["pooled_output"]] if "pooled_output" in encoder else [])]
        batch = self.ios[component].inputs[0].shape[0]
        step = batch if isinstance(batch, int) else len(ids)
        calls = [self.sessions[component](input_ids=ids[i:i + step]) for i in range(0, len(ids), step)]
        return {name: np.concatenate([out[name] for out in calls]) for name in wanted}

    def _encode(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """The UNet's text inputs for ``prompts``: ``encoder_hidden_states`` (every encoder's output, concatenated
        on the last axis) and, for SDXL, the pooled ``text_embeds``."""
        states, cond = [], {}
        for encoder in self.text_encoders:
            out = self._encode_with(encoder, prompts)
            states.append(out[encoder["output"]])
            if "pooled_output" in encoder:
                cond["text_embeds"] = out[encoder["pooled_output"]]
        cond["encoder_hidden_states"] = np.concatenate(states, axis=-1) if len(states) > 1 else states[0]
        return cond

    def _unet(self, sample: np.ndarray, t: float, cond: dict[str, np.ndarray],
              timestep_cond: np.ndarray | None) -> np.ndarray:
        inputs = {"sample": sample, "timestep": np.asarray(t, dtype=np.float32), **cond}
        if timestep_cond is not None:
            inputs["timestep_cond"] = timestep_cond
        return self.sessions["unet"](**inputs)["out_sample"]

    # -- the call --------------------------------------------------------------------------------

    def encode(self, pixels: np.ndarray, noise=None) -> np.ndarray:
        """(1, 3, H, W) image in [-1, 1] -> scaled latents: a draw from the VAE posterior with ``noise(shape)``
        (diffusers' ``latent_dist.sample``), or its mean when ``noise`` is None."""
        self._require_encoder()

        def moments_of(x):
            return self.sessions["vae_encoder"](sample=x)["latent_parameters"]

        moments = self._through_vae(moments_of, np.asarray(pixels, dtype=np.float32), self.image["vae_scale_factor"], 1)
        mean, logvar = np.split(moments.astype(np.float64), 2, axis=1)
        if noise is not None:  # diffusers clamps the log-variance before taking the std
            mean = mean + np.exp(0.5 * np.clip(logvar, -30.0, 20.0)) * np.asarray(noise(mean.shape), np.float64)
        return (mean * self.image["scaling_factor"]).astype(np.float32)

    def _require_encoder(self) -> None:
        if "vae_encoder" not in self.sessions:
            raise BundleError(f"bundle {self.bundle} has no VAE encoder ({self.backend}): image-to-image needs one",
                              hint="re-export with `edgeldm export MODEL -o DIR --vae-encoder`")

    @property
    def inpainting_unet(self) -> bool:
        return self.unet_in_channels == self.image["latent_channels"] * 2 + 1

    def _input_images(self, image, mask, height: int | None, width: int | None, resize: bool):
        """The input image (and mask, same size) opened and fitted to the size multiple."""
        from .images import fit_image, open_image

        image = open_image(image)
        if mask is not None:
            mask = open_image(mask, "mask")
            if mask.size != image.size:
                raise EdgeLDMError(f"the mask is {mask.width}x{mask.height}; the image is {image.width}x{image.height}",
                                   hint="the mask must have the image's size (white = repaint)")
            mask = fit_image(mask, self.size_multiple, resize=resize, what="mask")
        fitted = fit_image(image, self.size_multiple, resize=resize)
        if (height or fitted.height, width or fitted.width) != (fitted.height, fitted.width):
            raise EdgeLDMError(f"the input image is {fitted.width}x{fitted.height}; asked for {width}x{height}",
                               hint="leave out --height/--width: image-to-image keeps the input's size")
        return fitted, mask

    def latents(self, prompt: str, negative_prompt: str | None = None, steps: int | None = None,
                guidance: float | None = None, seed: int = 0, height: int | None = None, width: int | None = None,
                initial_latents: np.ndarray | None = None, noise=None, *, image=None, mask=None,
                strength: float | None = None, resize: bool = True) -> np.ndarray:
        """The final (scaled) latents of one image.

        ``noise`` names the seeded generator of every draw (initial latents, the re-noising of samplers such as
        LCM): ``"philox"`` (the default: Philox4x32-10 + Box–Muller, reproducible in any language —
        docs/bundle-format.md#noise) or ``"numpy"`` (numpy's PCG64, the draw before bundle format 3); or a
        callable ``shape -> float32 array``, e.g. to replay torch's generator and reproduce a diffusers
        pipeline image exactly. ``initial_latents`` replaces the first draw.

        ``image`` (a path, PIL image or HWC uint8 array) turns on image-to-image at ``strength`` (default 0.8, as
        diffusers): the output keeps the image's size, which is shrunk to the size multiple with a warning
        unless ``resize`` is false. Its draws, in diffusers' order: the posterior sample, the start noise, then
        the sampler's. ``mask`` (same size, white = repaint) turns it into inpainting, at strength 1.0 by default
        (pure noise inside the mask); a bundle with an inpainting UNet takes nothing else.
        """
        steps = check_positive_int(steps or self.defaults["steps"], "steps")
        guidance = check_guidance(self.defaults["guidance"] if guidance is None else guidance)
        seed = check_seed(seed)
        check_text(prompt, "prompt")
        if negative_prompt is not None:
            check_text(negative_prompt, "negative prompt")
        if image is None and (strength is not None or mask is not None):
            raise EdgeLDMError(f"{'a mask' if mask is not None else 'strength'} applies to an input image: pass the "
                               "image too")
        if self.inpainting_unet and mask is None:
            raise EdgeLDMError(f"{self.bundle} holds an inpainting UNet ({self.unet_in_channels} input channels): it "
                               "takes an image and a mask", hint="pass --image and --mask (white = repaint)")
        if image is not None:
            if initial_latents is not None:
                raise EdgeLDMError("initial_latents and an input image exclude each other")
            strength = check_strength((1.0 if mask is not None else 0.8) if strength is None else strength)
            self._require_encoder()
            image, mask = self._input_images(image, mask, height, width, resize)
            height, width = image.height, image.width
        height, width = height or self.image["height"], width or self.image["width"]
        self._check_size(height, width)
        factor = self.image["vae_scale_factor"]
        if noise is None or isinstance(noise, str):
            try:
                noise = noise_source(noise or DEFAULT_NOISE, seed)
            except ValueError as exc:
                raise EdgeLDMError(str(exc)) from None
        try:
            if image is None:
                plan = self.sampler.plan(steps)
                state = self.sampler.initial_state(plan)
            else:
                plan, state = self.sampler.img2img_start(steps, strength)
        except ValueError as exc:  # the sampler's own range (the training schedule, LCM's original steps)
            raise EdgeLDMError(f"{steps} steps: {exc}",
                               hint="choose fewer steps" if image is None else "change the steps or the strength") \
                from None
        # 1-2. prompt embeddings; guidance doubles the batch unless the UNet embeds the guidance scale
        use_embedding = self.guidance_embedding_dim is not None
        do_cfg = guidance > 1.0 and not use_embedding
        if do_cfg and negative_prompt is None and self.zero_negative:
            # SDXL's force_zeros_for_empty_prompt: no negative prompt means a zero unconditional embedding
            cond = self._encode([prompt])
            cond = {k: np.concatenate([np.zeros_like(v), v]) for k, v in cond.items()}
        else:
            cond = self._encode([negative_prompt or "", prompt] if do_cfg else [prompt])
        self.release(*(e["component"] for e in self.text_encoders))
        timestep_cond = guidance_scale_embedding(np.array([guidance - 1.0]), self.guidance_embedding_dim) \
            if use_embedding else None
        if "time_ids" in self.added_conditions:
            cond["time_ids"] = np.tile(np.asarray([micro_conditioning(height, width)], np.float32),
                                       (len(cond["encoder_hidden_states"]), 1))
        # 3. initial latents
        shape = (1, self.image["latent_channels"], height // factor, width // factor)
        known = extra = None  # inpainting: the region kept, and the inpainting UNet's extra input channels
        if image is not None:  # the input's latents, noised to where the truncated schedule starts
            from .images import mask_array, to_model_input

            pixels = to_model_input(image)
            # diffusers' inpainting starts from pure noise at full strength: an inpainting UNet needs no clean latents
            pure = mask is not None and strength == 1.0
            clean = None if pure and self.inpainting_unet else self.encode(pixels, noise)
            start = np.asarray(noise(shape), np.float32)
            if pure:
                latents = (start * plan.init_noise_sigma).astype(np.float32)
            else:
                latents = self.sampler.add_noise(clean, start, plan, state)
            if mask is not None:
                repaint = mask_array(mask)
                latent_mask = repaint[:, :, ::factor, ::factor]  # torch's nearest interpolation at an integer factor
                if self.inpainting_unet:
                    extra = np.concatenate([latent_mask, self.encode(pixels * (repaint < 0.5), noise)], axis=1)
                else:
                    known = (clean, start, latent_mask)
            self.release("vae_encoder")
        else:
            latents = np.asarray(noise(shape) if initial_latents is None else initial_latents,
                                 dtype=np.float32).reshape(shape)
            latents = (latents * plan.init_noise_sigma).astype(np.float32)
        # 4. denoise (image-to-image enters the plan at the state's step)
        for t in plan.timesteps[state.step_index:]:
            model_in = self.sampler.scale_model_input(latents, plan, state).astype(np.float32)
            if extra is not None:
                model_in = np.concatenate([model_in, extra], axis=1)
            if do_cfg:
                out = self._unet(np.concatenate([model_in, model_in]), t, cond, timestep_cond)
                uncond, text = out[:1], out[1:]
                out = uncond + guidance * (text - uncond)
            else:
                if isinstance(self.unet_batch, int) and self.unet_batch != 1:
                    raise EdgeLDMError("this static bundle's UNet takes a guidance batch of "
                                       f"{self.unet_batch}; use guidance > 1")
                out = self._unet(model_in, t, cond, timestep_cond)
            eps = np.asarray(noise(latents.shape), dtype=np.float32) \
                if self.sampler.requires_noise(plan, state) else None
            latents, _, state = self.sampler.step(out, latents, plan, state, noise=eps)
            if known is not None:  # the kept region, at the noise level of the next step (clean after the last)
                clean, start, latent_mask = known
                proper = self.sampler.add_noise(clean, start, plan, state) \
                    if state.step_index < len(plan.timesteps) else clean
                latents = (1.0 - latent_mask) * proper + latent_mask * latents
            latents = latents.astype(np.float32)
        self.release("unet")
        if not np.isfinite(latents).all():
            raise LatentsOverflowError(guidance, steps)
        return latents

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents -> uint8 HWC image (tiled past ``vae_tile`` latent pixels a side)."""
        latents = (latents / self.image["scaling_factor"]).astype(np.float32)

        def decode(z):
            return self.sessions["vae_decoder"](latent_sample=z)["sample"]

        image = self._through_vae(decode, latents, 1, self.image["vae_scale_factor"])
        self.release("vae_decoder")
        image = np.clip((image[0] + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        return image.transpose(1, 2, 0)

    def _through_vae(self, fn, x: np.ndarray, in_pixels: int, out_pixels: int) -> np.ndarray:
        """``fn(x)`` — a VAE half that maps ``in_pixels`` of ``x`` to ``out_pixels`` of its output — tiled at
        ``vae_tile`` latent pixels when ``x`` is larger than one tile."""
        if not self.vae_tile:
            return fn(x)
        return tiled_apply(fn, x, self.vae_tile * in_pixels, self.vae_tile * out_pixels)

    def release(self, *components: str) -> None:
        """Low-memory mode: close these components' sessions (they reopen on their next call); else a no-op."""
        for c in components:
            if c in self._lazy:
                self._lazy[c].release()

    def __call__(self, prompt: str, negative_prompt: str | None = None, steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, height: int | None = None, width: int | None = None,
                 *, image=None, mask=None, strength: float | None = None, resize: bool = True, noise=None):
        """One PIL image for ``prompt`` (from ``image`` at ``strength`` for image-to-image, with ``mask`` for
        inpainting; ``noise`` names the generator: see :meth:`latents`)."""
        from PIL import Image

        return Image.fromarray(self.decode(self.latents(prompt, negative_prompt, steps, guidance, seed, height, width,
                                                        noise=noise, image=image, mask=mask, strength=strength,
                                                        resize=resize)))

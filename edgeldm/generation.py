"""Text-to-image through the diffusers pipeline: the torch reference path every other path is compared to."""

from __future__ import annotations

import numpy as np

from ._lazy import require
from .arguments import check_guidance, check_image_size, check_positive_int, check_seed, check_text
from .errors import EdgeLDMError, LatentsOverflowError
from .progress import progress_bar


def check_request(pipe, texts: list[str], *, steps: int, guidance: float, seeds: list[int],
                  height: int | None, width: int | None) -> None:
    """What diffusers would otherwise reject deep inside the call (or, for guidance, not at all)."""
    from .components import size_multiple, vae_scale_factor

    for text in texts:
        check_text(text)
    check_positive_int(steps, "steps")
    check_guidance(guidance)
    for seed in seeds:
        check_seed(seed)
    config = pipe.scheduler.config
    # an LCM's timesteps are a subset of the schedule it was distilled on
    limit = getattr(config, "original_inference_steps", None) or config.num_train_timesteps
    if steps > limit:
        raise EdgeLDMError(f"{steps} steps: {type(pipe.scheduler).__name__} takes at most {limit}",
                           hint="choose fewer steps")
    factor = vae_scale_factor(pipe.vae.config)
    native = pipe.unet.config.sample_size * factor
    check_image_size(height or native, width or native, size_multiple(pipe.vae.config, pipe.unet.config),
                     why=f"VAE factor {factor} x the UNet's downsamplings")


def generate(pipe, prompts: list[str], *, steps: int, guidance: float, seeds: list[int], batch_size: int = 16,
             height: int | None = None, width: int | None = None,
             negative_prompts: list[str] | None = None, decode: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Images (n, H, W, 3) uint8 and final latents (n, C, h, w) float32, one seed per prompt.

    ``decode=False`` skips the VAE decoder (images come back as None) for callers that need only latents,
    such as the training stages' teacher data: decoding is ~15 % of a 25-step generation of ``tiny``.

    Each image gets its own ``torch.Generator`` seeded with its seed, so an image does not depend on
    the batch it was generated in.
    """
    from .schedulers import call_kwargs

    torch = require("torch")
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    check_request(pipe, prompts + list(negative_prompts or []), steps=steps, guidance=guidance, seeds=seeds,
                  height=height, width=width)
    pipe.set_progress_bar_config(disable=True)
    images, latents = [], []
    with torch.no_grad(), progress_bar(total=len(prompts), desc="generating", unit="img") as bar:
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i:i + batch_size]]
            negative = negative_prompts[i:i + batch_size] if negative_prompts else None
            lat = pipe(chunk, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
                       generator=gens, height=height, width=width, output_type="latent",
                       **call_kwargs(pipe)).images
            if not torch.isfinite(lat).all():
                raise LatentsOverflowError(guidance, steps)
            if decode:
                decoded = pipe.vae.decode(lat / pipe.vae.config.scaling_factor).sample
                images.append(pipe.image_processor.postprocess(decoded, output_type="np"))
            latents.append(lat.float().cpu().numpy())
            bar.update(len(chunk))
    if not decode:
        return None, np.concatenate(latents)
    imgs = np.concatenate(images)
    return (np.clip(imgs * 255.0 + 0.5, 0, 255)).astype(np.uint8), np.concatenate(latents)

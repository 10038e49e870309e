"""Text-to-image through the diffusers pipeline: the torch reference path every other path is compared to."""

from __future__ import annotations

import numpy as np

from ._lazy import require
from .progress import progress_bar


def generate(pipe, prompts: list[str], *, steps: int, guidance: float, seeds: list[int], batch_size: int = 16,
             height: int | None = None, width: int | None = None,
             negative_prompts: list[str] | None = None, decode: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Images (n, H, W, 3) uint8 and final latents (n, C, h, w) float32, one seed per prompt.

    ``decode=False`` skips the VAE decoder (images come back as None) for callers that need only latents,
    such as the training stages' teacher data: decoding is ~15 % of a 25-step generation of ``tiny``.

    Each image gets its own ``torch.Generator`` seeded with its seed, so an image does not depend on
    the batch it was generated in.
    """
    torch = require("torch")
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    pipe.set_progress_bar_config(disable=True)
    images, latents = [], []
    with torch.no_grad(), progress_bar(total=len(prompts), desc="generating", unit="img") as bar:
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i:i + batch_size]]
            negative = negative_prompts[i:i + batch_size] if negative_prompts else None
            lat = pipe(chunk, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
                       generator=gens, height=height, width=width, output_type="latent").images
            if decode:
                decoded = pipe.vae.decode(lat / pipe.vae.config.scaling_factor).sample
                images.append(pipe.image_processor.postprocess(decoded, output_type="np"))
            latents.append(lat.float().cpu().numpy())
            bar.update(len(chunk))
    if not decode:
        return None, np.concatenate(latents)
    imgs = np.concatenate(images)
    return (np.clip(imgs * 255.0 + 0.5, 0, 255)).astype(np.uint8), np.concatenate(latents)

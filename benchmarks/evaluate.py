"""``edgeldm eval``: generate held-out prompts with a model and score them exactly."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..calibration.scenes import eval_prompts, make_scenes
from .quality import frechet_distance, prompt_accuracy

logger = logging.getLogger("edgeldm")
EVAL_SCHEMA = "edgeldm.eval/1"


@dataclass(frozen=True)
class EvalConfig:
    prompts: int = 200
    steps: int = 25
    guidance: float = 7.5
    seed: int = 0
    split: str = "heldout"  # or "compositional": (shape, colour) pairs never seen in training
    scheduler: str | None = None  # None: the model's own
    batch_size: int = 25
    reference_images: int = 1000  # held-out real scenes for the Fréchet distance


@dataclass
class EvalResult:
    metrics: dict
    images: np.ndarray
    latents: np.ndarray
    captions: list[str]
    scenes: list  # the Scene each caption asked for
    predicted: np.ndarray

    def correct(self) -> list[bool]:
        """Per image: every scored attribute right."""
        from ..calibration.scenes import ATTRIBUTES
        from .quality import SCORED_ATTRIBUTES

        cols = [ATTRIBUTES.index(a) for a in SCORED_ATTRIBUTES]
        truth = np.array([sc.labels() for sc in self.scenes])[:, cols]
        return [bool(ok) for ok in (self.predicted[:, cols] == truth).all(axis=1)]


def evaluate_pipeline(pipe, config: EvalConfig = EvalConfig(), *, scorer=None, model_name: str = "") -> EvalResult:
    from ..generation import generate
    from ..schedulers import swap_scheduler
    from .attribute_classifier import AttributeScorer

    if config.prompts < 2:
        from ..errors import EdgeLDMError

        raise EdgeLDMError(f"--prompts must be at least 2 (a Fréchet distance needs two samples), got {config.prompts}")
    if config.scheduler:
        swap_scheduler(pipe, config.scheduler)
    scorer = scorer or AttributeScorer()
    captions, scenes, seeds = eval_set(config)
    t0 = time.perf_counter()
    images, latents = generate(pipe, captions, steps=config.steps, guidance=config.guidance, seeds=seeds,
                               batch_size=config.batch_size)
    seconds = time.perf_counter() - t0
    metrics, predicted = score_images(images, scenes, config, scorer=scorer)
    metrics.update(model=model_name, scheduler=type(pipe.scheduler).__name__, generation_seconds=round(seconds, 2))
    return EvalResult(metrics, images, latents, captions, scenes, predicted)


def evaluate_bundle(bundle, config: EvalConfig, *, backend: str = "onnx", scorer=None,
                    session_options: dict | None = None, verify: bool = True) -> EvalResult:
    """``evaluate_pipeline`` for an exported bundle: the same prompts and seeds through the torch-free runtime.

    The runtime draws its noise with numpy, diffusers with torch: same metric, different images, so compare a
    bundle with a model through their metrics, not image by image.
    """
    from ..runtimes.text2image import Text2Image
    from .attribute_classifier import AttributeScorer

    t2i = Text2Image(bundle, backend=backend, sampler=config.scheduler, verify=verify, **(session_options or {}))
    captions, scenes, seeds = eval_set(config)
    t0 = time.perf_counter()
    latents = np.stack([t2i.latents(c, steps=config.steps, guidance=config.guidance, seed=s)[0]
                        for c, s in zip(captions, seeds)])
    images = np.stack([t2i.decode(z[None]) for z in latents])
    seconds = time.perf_counter() - t0
    metrics, predicted = score_images(images, scenes, config, scorer=scorer or AttributeScorer())
    metrics.update(model=str(bundle), backend=backend, scheduler=t2i.sampler.__class__.__name__,
                   generation_seconds=round(seconds, 2))
    return EvalResult(metrics, images, latents, captions, scenes, predicted)


def eval_set(config: EvalConfig) -> tuple[list[str], list, list[int]]:
    """The captions, the scenes they ask for, and one seed per caption: the same for every model."""
    pairs = eval_prompts(config.prompts, seed=config.seed, split=config.split)
    captions = [c for c, _ in pairs]
    return captions, [s for _, s in pairs], [config.seed * 100_003 + i for i in range(len(captions))]


def score_images(images: np.ndarray, scenes: list, config: EvalConfig, *, scorer=None) -> tuple[dict, np.ndarray]:
    """Metrics of generated uint8 images (n, H, W, 3) against the scenes their prompts asked for.

    Whatever made the images (diffusers, an exported bundle through the runtime, a peer pipeline), the same
    classifier and reference set score them, so the numbers compare across paths.
    """
    from .attribute_classifier import AttributeScorer

    scorer = scorer or AttributeScorer()
    feats, predicted = scorer(images)
    real = make_scenes(config.reference_images, seed=config.seed + 2000, split=config.split)
    real_feats, _ = scorer(real.images)
    metrics = {
        "schema": EVAL_SCHEMA,
        "accuracy": prompt_accuracy(predicted, scenes),
        "fd": frechet_distance(feats, real_feats),
        "images": len(images),
        "steps": config.steps,
        "guidance": config.guidance,
        "seed": config.seed,
        "split": config.split,
        "config": asdict(config),
    }
    return metrics, predicted


def vae_ceiling(pipe, *, images: int = 500, seed: int = 0, split: str = "heldout", scorer=None) -> dict:
    """Prompt accuracy of real held-out scenes passed through the model's VAE (encode -> decode).

    A reference for ``eval``: what the VAE reproduces of real scenes. Not a strict bound: the VAE softens
    small shapes that a UNet may still draw as crisp prototypes.
    """
    import torch

    from .attribute_classifier import AttributeScorer

    scorer = scorer or AttributeScorer()
    real = make_scenes(images, seed=seed + 3000, split=split)
    x = torch.from_numpy(real.images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.no_grad():
        recon = torch.cat([pipe.vae.decode(pipe.vae.encode(x[i:i + 100]).latent_dist.mean).sample
                           for i in range(0, len(x), 100)])
    out = ((recon.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    _, predicted = scorer(out)
    from .quality import psnr

    return {"accuracy": prompt_accuracy(predicted, real.scenes),
            "psnr_db": float(np.mean(psnr(real.images, out))), "images": images, "split": split}

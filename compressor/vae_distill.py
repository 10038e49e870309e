"""A tiny VAE for any model: diffusers' ``AutoencoderTiny`` (TAESD's architecture) trained to reproduce its VAE.

Why: pruning and few-step distillation leave the VAE decoder untouched, so it becomes the largest single cost
of an image — on SD v1.5 it is 311 GMACs at 256 px (1.26 T at 512 px), three UNet steps' worth, and 1.3 s of
a 4-step student's 3.6 s per 256-px image on 2 CPU cores. ``AutoencoderTiny``'s decoder is plain 3x3
convolutions, ReLU and nearest-neighbour upsampling — no GroupNorm, no attention — at 17.7 GMACs for the same
image (SnapFusion and TAESD replace SD's decoder the same way).

The training data are the model's own: latents its pipeline generates for calibration prompts (the latents the
decoder sees at run time; plus ``tiny``'s training scenes through the VAE for tiny-derived models) and the
images its VAE decodes them to. The decoder learns latent -> that image (MSE + L1), the encoder learns image ->
what the original encoder makes of it (MSE to its posterior mean), so the new VAE encodes as well. The latents
are the UNet's (already multiplied by the VAE's ``scaling_factor``): ``AutoencoderTiny`` has scaling factor 1,
so pipelines feed it the UNet's output as is.
Runs under HF accelerate, resumable from ``OUT.work/``; a held-out set of latents measures the result against
the original decoder (image PSNR in uint8) and encoder (latent PSNR).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .vae_distill_config import VaeDistillConfig

logger = logging.getLogger("edgeldm")


def tiny_autoencoder(vae_config, config: VaeDistillConfig):
    """An ``AutoencoderTiny`` with the model VAE's latent layout and downsampling factor."""
    from diffusers import AutoencoderTiny

    from ..errors import EdgeLDMError

    levels = len(vae_config["block_out_channels"])
    decoder_blocks, encoder_blocks = config.blocks(levels)
    for name, blocks in (("decoder-blocks", decoder_blocks), ("encoder-blocks", encoder_blocks)):
        if len(blocks) != levels:
            raise EdgeLDMError(f"--{name} has {len(blocks)} levels but the model's VAE has {levels} (downsampling "
                               f"factor {2 ** (levels - 1)})", hint="give one block count per level, e.g. "
                               + ",".join(map(str, VaeDistillConfig().blocks(levels)[name.startswith("encoder")])))
    width = config.channels or min(64, int(vae_config["block_out_channels"][0]))
    return AutoencoderTiny(
        in_channels=vae_config["in_channels"], out_channels=vae_config["out_channels"],
        latent_channels=vae_config["latent_channels"], encoder_block_out_channels=(width,) * levels,
        decoder_block_out_channels=(width,) * levels, num_encoder_blocks=encoder_blocks,
        num_decoder_blocks=decoder_blocks)


def vae_dataset(pipe, source: str, config: VaeDistillConfig, *, prompts_file=None) -> dict:
    """{latents (as the UNet sees them), images (what the model's VAE decodes them to, fp16 in [-1, 1]), codes
    (what its encoder makes of those images: the posterior mean, scaled like the latents)}."""
    from .training import teacher_latents

    latents, _ = teacher_latents(pipe, source, samples=config.teacher_samples, steps=config.teacher_steps,
                                 guidance=config.guidance, scene_samples=config.scene_samples, seed=config.seed,
                                 prompts_file=prompts_file)
    vae, sf = pipe.vae, pipe.vae.config.scaling_factor
    images, codes = [], []
    with torch.no_grad():
        for i in range(0, len(latents), 64):
            x = vae.decode(latents[i:i + 64].to(pipe.device, vae.dtype) / sf).sample.clamp(-1, 1)
            images.append(x.half().cpu())
            # the encoder's target is the original encoder's mean, not the latent the image came from: a
            # posterior sample (tiny's scenes) carries noise no encoder can predict
            codes.append((vae.encode(x).latent_dist.mean * sf).float().cpu())
    logger.info("tiny-VAE data: %d latents %s -> images %s", len(latents), tuple(latents.shape[1:]),
                tuple(images[0].shape[1:]))
    return {"latents": latents, "images": torch.cat(images), "codes": torch.cat(codes)}


class _Autoencode(torch.nn.Module):
    """Both halves in one forward, so accelerate's wrappers (DDP) see one module: latents -> image, image -> latents."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.decode(latents).sample, self.vae.encode(images).latents


def distill_vae(pipe, source: str, config: VaeDistillConfig, *, work: Path, prompts_file=None):
    """Train an ``AutoencoderTiny`` on ``pipe``'s VAE; returns (the tiny VAE, summary). Resumes from ``work``."""
    from accelerate import Accelerator

    from ..progress import progress_bar
    from .training import RunningLosses, WorkDir, adamw, warmup_cosine

    config.check()
    torch.manual_seed(config.seed)
    tiny = tiny_autoencoder(pipe.vae.config, config)  # block counts that do not fit the VAE fail before any work
    work = WorkDir(work, "distill-vae", {"source": str(source), "config": asdict(config),
                                         "prompts_file": str(prompts_file)})
    accelerator = Accelerator()
    pipe.to(accelerator.device)
    with accelerator.main_process_first():
        data = work.data(lambda: vae_dataset(pipe, source, config, prompts_file=prompts_file))
    latents, images, codes = data["latents"].float(), data["images"], data["codes"]
    order = torch.randperm(len(latents), generator=torch.Generator().manual_seed(config.seed))
    held = order[:min(config.holdout, max(1, len(latents) // 10)) if len(latents) > 1 else 0]
    train = order[len(held):]

    model = _Autoencode(tiny).train()
    opt = adamw(model.parameters(), config.lr)
    sched = warmup_cosine(opt, config.warmup, config.steps)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    start = work.resume(accelerator)
    rng = np.random.default_rng([config.seed, start, accelerator.process_index])
    losses = RunningLosses(("loss", "decoder", "encoder"), "distill-vae", config.steps)
    dev, t0 = accelerator.device, time.perf_counter()
    with progress_bar(total=config.steps, initial=start, desc="distill-vae", unit="step") as bar:
        for step in range(start, config.steps):
            idx = train[torch.from_numpy(rng.integers(len(train), size=config.batch_size))]
            z, x, c = latents[idx], images[idx].float(), codes[idx]
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)  # mirrored scenes are scenes too: twice the data
            z[flip], x[flip], c[flip] = z[flip].flip(-1), x[flip].flip(-1), c[flip].flip(-1)
            z, x, c = z.to(dev), x.to(dev), c.to(dev)
            decoded, encoded = model(z, x)
            dec = F.mse_loss(decoded, x) + config.l1_weight * F.l1_loss(decoded, x)
            enc = F.mse_loss(encoded, c)
            loss = dec + config.encoder_weight * enc
            accelerator.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.update(step + 1, time.perf_counter() - t0, loss=loss, decoder=dec, encoder=enc)
            bar.update(1)
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                work.checkpoint(accelerator, step + 1)
    tiny = accelerator.unwrap_model(model).vae.eval()
    parity = vae_parity(tiny, latents[held], images[held].float(), codes[held])
    logger.info("tiny VAE on %d held-out latents: %s", len(held), parity)
    return tiny, {"config": asdict(config), "history": losses.history, "resumed_from": start,
                  "seconds": round(time.perf_counter() - t0, 1), "data": len(latents), "parity": parity}


def vae_parity(tiny, latents: torch.Tensor, images: torch.Tensor, codes: torch.Tensor) -> dict:
    """The tiny VAE against the model's: decoded images (uint8, as a user sees them) and the encoder's codes."""
    from ..benchmarks.quality import psnr

    if not len(latents):
        return {"images": 0}
    dev = next(tiny.parameters()).device
    with torch.no_grad():
        decoded = torch.cat([tiny.decode(latents[i:i + 64].to(dev)).sample.cpu() for i in range(0, len(latents), 64)])
        encoded = torch.cat([tiny.encode(images[i:i + 64].to(dev)).latents.cpu() for i in range(0, len(images), 64)])

    def to_uint8(x):
        return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).numpy()

    image_psnr = psnr(to_uint8(decoded), to_uint8(images))
    latent_psnr = psnr(encoded.numpy(), codes.numpy(), peak=float(codes.abs().max()))
    return {"images": len(latents), "decoder_psnr_db_mean": round(float(np.mean(image_psnr)), 2),
            "decoder_psnr_db_min": round(float(np.min(image_psnr)), 2),
            "encoder_latent_psnr_db_mean": round(float(np.mean(latent_psnr)), 2)}


def save_tiny_vae(pipe, tiny, out: str | Path, *, source: str | Path, base: str, summary: dict,
                  overwrite: bool = False, protect: tuple = ()) -> Path:
    """``source``'s model with its VAE replaced by ``tiny``, written atomically as a standard diffusers folder.

    What the source recorded travels along: a pruning plan (so the UNet reloads the same way) and the sampling
    defaults of a distilled model (4 steps stay 4 steps).
    """
    import shutil

    from ..atomic import atomic_output_dir
    from ..lineage import read_lineage, write_lineage
    from ..saving import save_pipeline
    from .plan import PLAN_FILE

    pipe.register_modules(vae=tiny)
    recorded = read_lineage(source) or {}
    extra = {k: recorded[k] for k in ("sampling", "mode") if k in recorded}
    with atomic_output_dir(out, overwrite=overwrite, protect=protect) as tmp:
        save_pipeline(pipe, tmp)
        plan = Path(source) / "unet" / PLAN_FILE
        if plan.is_file():
            shutil.copy2(plan, tmp / "unet" / PLAN_FILE)
        write_lineage(tmp, base, "distill-vae", **extra,
                      distill_vae={k: v for k, v in summary.items() if k != "history"})
    return Path(out)

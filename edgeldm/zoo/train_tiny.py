"""Train ``tiny``: a text-to-image LDM with Stable Diffusion's architecture, from scratch, on 2 CPU cores.

    python -m edgeldm.zoo.train_tiny --out DIR [--seed 0] [--work DIR.work]

Stages, each checkpointed under ``--work`` so an interrupted run resumes where it stopped:

1. **data** — captioned scenes from :mod:`edgeldm.calibration.scenes` (``train`` split);
2. **vae** — ``AutoencoderKL``, downsampling factor 8, 4 latent channels (SD's latent layout);
3. **latents** — every training image encoded once (posterior mean and std; training samples from it);
   the VAE ``scaling_factor`` is measured here as 1 / std of the latents, as SD did;
4. **text** — a small ``CLIPTextModel`` over the real CLIP BPE tokenizer (77 tokens, as SD), briefly
   pretrained to name the caption's attributes from its pooled output, then frozen: it stands in for
   the pretrained CLIP that Stable Diffusion starts from, so UNet steps are not spent learning language;
5. **unet** — ``UNet2DConditionModel`` from SD block types, SD's noise schedule (scaled-linear betas
   0.00085–0.012, 1000 steps, ε-prediction), min-SNR-5 loss weighting, 10 % caption dropout for
   classifier-free guidance, EMA of the weights;
6. **save** — a standard diffusers ``StableDiffusionPipeline`` folder with safetensors (written
   atomically), which edgeldm ships as zoo entry ``tiny``.

Everything is seeded; with the same arguments and thread count the run is reproducible.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger("edgeldm.train_tiny")


@dataclass(frozen=True)
class TinyTrainingConfig:
    seed: int = 0
    train_images: int = 40_000
    # VAE
    vae_channels: tuple[int, ...] = (32, 64, 64, 64)
    vae_layers_per_block: int = 1
    vae_steps: int = 2000
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_kl_weight: float = 3e-5
    # text encoder
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_steps: int = 400
    text_batch: int = 128
    text_lr: float = 1e-3
    # UNet
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_layers_per_block: int = 2
    unet_norm_groups: int = 8
    unet_steps: int = 6000
    unet_batch: int = 128
    unet_lr: float = 6e-4
    unet_warmup: int = 200
    caption_dropout: float = 0.1
    snr_gamma: float = 5.0
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    threads: int = 2


SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   prediction_type="epsilon")


# --- helpers -----------------------------------------------------------------------------------


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path):
    import torch

    # our own checkpoints: tensors, numbers and RNG state only
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def _images_to_tensor(images: np.ndarray):
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class _Log:
    def __init__(self, path: Path):
        self.path = path
        self.t0 = time.time()

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.0f}s] {msg}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


# --- stages ------------------------------------------------------------------------------------


def build_vae(cfg: TinyTrainingConfig):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=cfg.vae_channels,
        layers_per_block=cfg.vae_layers_per_block, down_block_types=["DownEncoderBlock2D"] * len(cfg.vae_channels),
        up_block_types=["UpDecoderBlock2D"] * len(cfg.vae_channels), norm_num_groups=16, sample_size=64,
    )


def train_vae(cfg: TinyTrainingConfig, images, work: Path, log: _Log):
    import torch

    vae = build_vae(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.vae_steps) / cfg.vae_steps)))
    ckpt_path = work / "vae.pt"
    start = 0
    state = _load_checkpoint(ckpt_path)
    if state is not None:
        vae.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"]); start = state["step"]
        log(f"vae: resumed at step {start}")
    else:
        torch.manual_seed(cfg.seed + 1)
    gen = np.random.Generator(np.random.PCG64([cfg.seed, 11]))
    order = gen.integers(len(images), size=(cfg.vae_steps, cfg.vae_batch))
    vae.train()
    running = None
    for step in range(start, cfg.vae_steps):
        x = _images_to_tensor(images[order[step]])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = torch.nn.functional.mse_loss(recon, x)
        loss = mse + 0.5 * (recon - x).abs().mean() + cfg.vae_kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step(); sched.step()
        running = mse.item() if running is None else 0.95 * running + 0.05 * mse.item()
        if (step + 1) % 50 == 0:
            psnr = 10 * math.log10(4.0 / max(running, 1e-10))
            log(f"vae step {step + 1}/{cfg.vae_steps}  mse {running:.5f}  psnr {psnr:.2f} dB  lr {sched.get_last_lr()[0]:.2e}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.vae_steps:
            _atomic_torch_save({"model": vae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                "rng": torch.get_rng_state(), "step": step + 1}, ckpt_path)
    return vae.eval()


def encode_latents(vae, images, work: Path, log: _Log, batch: int = 256):
    import torch

    path = work / "latents.pt"
    cached = _load_checkpoint(path)
    if cached is not None:
        return cached["mean"], cached["std"], cached["scaling_factor"]
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            dist = vae.encode(_images_to_tensor(images[i:i + batch])).latent_dist
            means.append(dist.mean); stds.append(dist.std)
    mean, std = torch.cat(means), torch.cat(stds)
    sample = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    scaling_factor = float(1.0 / sample.std())
    log(f"latents: {tuple(mean.shape)}, mean {sample.mean():.3f}, std {sample.std():.3f} -> scaling_factor {scaling_factor:.4f}")
    _atomic_torch_save({"mean": mean, "std": std, "scaling_factor": scaling_factor}, path)
    return mean, std, scaling_factor


def build_text_encoder(cfg: TinyTrainingConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads, max_position_embeddings=77,
        hidden_act="quick_gelu", projection_dim=cfg.text_hidden, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    ))


class _Captioner:
    """Fresh caption paraphrases for scenes, tokenized (77 tokens, padded as SD's pipeline does) with a cache."""

    def __init__(self, tokenizer, scenes, seed: int):
        self.tokenizer, self.scenes = tokenizer, scenes
        self.rng = np.random.Generator(np.random.PCG64([seed, 23]))
        self.cache: dict[str, list[int]] = {}

    def ids(self, captions: list[str]):
        import torch

        out = []
        for c in captions:
            if c not in self.cache:
                self.cache[c] = self.tokenizer(c, padding="max_length", max_length=77, truncation=True).input_ids
            out.append(self.cache[c])
        return torch.tensor(out)

    def captions(self, idx) -> list[str]:
        from ..calibration.scenes import caption

        return [caption(self.scenes[i], self.rng) for i in idx]


def train_text_encoder(cfg: TinyTrainingConfig, captioner: _Captioner, labels: np.ndarray, work: Path, log: _Log, *,
                       te=None, name: str = "text_encoder", readouts=None):
    """Pretrain a text encoder to name every caption attribute from ``readouts`` (feature vectors the UNet will
    read: ``[(width, fn(output) -> (B, width))]``; default the pooled output), then freeze it."""
    import torch

    from ..calibration.scenes import ATTRIBUTES, VALUES

    te = te if te is not None else build_text_encoder(cfg)
    readouts = readouts or [(cfg.text_hidden, lambda out: out.pooler_output)]
    path = work / f"{name}.pt"
    cached = _load_checkpoint(path)
    if cached is not None:
        te.load_state_dict(cached["model"])
        return te.eval().requires_grad_(False)
    torch.manual_seed(cfg.seed + 2)
    heads = torch.nn.ModuleList(torch.nn.ModuleList(torch.nn.Linear(width, len(VALUES[a])) for a in ATTRIBUTES)
                                for width, _ in readouts)
    opt = torch.optim.AdamW(list(te.parameters()) + list(heads.parameters()), lr=cfg.text_lr)
    gen = np.random.Generator(np.random.PCG64([cfg.seed, 13]))
    for step in range(cfg.text_steps):
        idx = gen.integers(len(labels), size=cfg.text_batch)
        captions = captioner.captions(idx)
        out = te(input_ids=captioner.ids(captions))
        y = torch.from_numpy(labels[idx])
        has_bg = torch.tensor([captioner.scenes[i].background in c for i, c in zip(idx, captions)])
        losses, accs = [], []
        for (_, readout), head_set in zip(readouts, heads):
            features = readout(out)
            for k, (attr, head) in enumerate(zip(ATTRIBUTES, head_set)):
                logits = head(features)
                mask = has_bg if attr == "background" else torch.ones(len(idx), dtype=torch.bool)
                losses.append(torch.nn.functional.cross_entropy(logits[mask], y[mask, k]))
                accs.append((logits[mask].argmax(1) == y[mask, k]).float().mean().item())
        loss = sum(losses)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if (step + 1) % 50 == 0:
            log(f"{name} step {step + 1}/{cfg.text_steps}  loss {loss.item():.4f}  attribute acc "
                + " ".join(f"{a} {v:.2f}" for a, v in zip(ATTRIBUTES * len(readouts), accs)))
    _atomic_torch_save({"model": te.state_dict()}, path)
    return te.eval().requires_grad_(False)


class _SDText:
    """SD's text conditioning for :func:`train_unet`: the text encoder's last hidden states."""

    def __init__(self, te, captioner: _Captioner):
        self.te, self.captioner = te, captioner

    def encode(self, captions: list[str]):
        import torch

        with torch.no_grad():
            return self.te(input_ids=self.captioner.ids(captions)).last_hidden_state

    def unconditional(self):
        return self.encode([""])

    def unet_kwargs(self, cond, noisy) -> dict:
        return {"encoder_hidden_states": cond}


def build_unet(cfg: TinyTrainingConfig):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=cfg.text_hidden, attention_head_dim=8,
        norm_num_groups=cfg.unet_norm_groups,
    )


def train_unet(cfg, unet, text, lat_mean, lat_std, scaling_factor, work: Path, log: _Log):
    """Train ``unet`` on the pre-encoded latents, conditioned by ``text`` (:class:`_SDText` or a family's twin:
    ``encode(captions)``, ``unconditional()``, ``unet_kwargs(cond, noisy)``, ``captioner``)."""
    import torch
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel, compute_snr

    captioner = text.captioner
    noise_sched = DDPMScheduler(**SD_SCHEDULE)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=1e-2)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.unet_warmup))
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
    ckpt_path = work / "unet.pt"
    start = 0
    state = _load_checkpoint(ckpt_path)
    if state is not None:
        unet.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); lr_sched.load_state_dict(state["sched"])
        ema.load_state_dict(state["ema"]); torch.set_rng_state(state["rng"]); start = state["step"]
        captioner.rng.bit_generator.state = state["caption_rng"]
        log(f"unet: resumed at step {start}")
    else:
        torch.manual_seed(cfg.seed + 3)
    n_params = sum(p.numel() for p in unet.parameters())
    log(f"unet: {n_params / 1e6:.2f} M parameters, {cfg.unet_steps} steps at batch {cfg.unet_batch}")
    gen = np.random.Generator(np.random.PCG64([cfg.seed, 17]))
    order = gen.integers(len(lat_mean), size=(cfg.unet_steps, cfg.unet_batch))
    empty = text.unconditional()
    unet.train()
    running, t_last = None, time.time()
    for step in range(start, cfg.unet_steps):
        idx = order[step]
        latents = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape)) * scaling_factor
        cond = text.encode(captioner.captions(idx))
        drop = torch.rand(len(idx)) < cfg.caption_dropout
        cond = torch.where(drop[:, None, None], empty.expand_as(cond), cond)
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),))
        noisy = noise_sched.add_noise(latents, noise, t)
        pred = unet(noisy, t, **text.unet_kwargs(cond, noisy)).sample
        snr = compute_snr(noise_sched, t)
        weight = torch.clamp(snr, max=cfg.snr_gamma) / snr  # min-SNR-γ for ε-prediction
        loss = (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step(); lr_sched.step(); ema.step(unet.parameters())
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 50 == 0:
            rate = 50 / (time.time() - t_last); t_last = time.time()
            log(f"unet step {step + 1}/{cfg.unet_steps}  loss {running:.4f}  {rate:.2f} steps/s  "
                f"eta {(cfg.unet_steps - step - 1) / rate / 60:.0f} min")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.unet_steps:
            _atomic_torch_save({"model": unet.state_dict(), "opt": opt.state_dict(), "sched": lr_sched.state_dict(),
                                "ema": ema.state_dict(), "rng": torch.get_rng_state(),
                                "caption_rng": captioner.rng.bit_generator.state, "step": step + 1}, ckpt_path)
    ema.copy_to(unet.parameters())
    return unet.eval()


def save_folder(cfg, pipe, out: Path, overwrite: bool, log: _Log, *, text_encoders=("text_encoder",)) -> None:
    """Write ``pipe`` as a diffusers folder (safetensors) with its training config, atomically. The token
    embedding (49 408 x hidden) is most of a text encoder: those are stored in fp16, which halves the shipped
    size; the pipeline computes in fp32 after loading."""
    from safetensors.torch import load_file, save_file

    from ..atomic import atomic_output_dir

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        for name in text_encoders:
            path = tmp / name / "model.safetensors"
            save_file({k: v.half() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
        (tmp / "training_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"saved {out} ({size / 2**20:.1f} MiB)")


def save_pipeline(cfg, vae, te, tokenizer, unet, scaling_factor: float, out: Path, overwrite: bool, log: _Log):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scaling_factor)
    scheduler = DDIMScheduler(**SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    save_folder(cfg, pipe, out, overwrite, log)


def start_run(module: str, doc: str, config_cls, fields: tuple[str, ...], argv):
    """Parse a trainer's command line (output, work folder, seed, integer overrides of ``fields``), set the
    thread count and log the config and command: ``(config, output folder, work folder, log, args)``, or None
    when OUT exists and may not be replaced."""
    import torch

    from ..loading import ensure_offline

    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output diffusers folder")
    parser.add_argument("--work", default=None, help="checkpoints and log (default: OUT.work); reused to resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    for field in fields:
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=None)
    args = parser.parse_args(argv)

    ensure_offline()
    cfg = config_cls(seed=args.seed, **{f: getattr(args, f) for f in fields if getattr(args, f) is not None})
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"error: {out} already exists (pass --overwrite)", file=sys.stderr)
        return None
    work = Path(args.work) if args.work else out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    log = _Log(work / "train.log")
    torch.set_num_threads(cfg.threads)
    log(f"config: {json.dumps(asdict(cfg))}")
    log(f"command: python -m {module} {' '.join(argv if argv is not None else sys.argv[1:])}")
    return cfg, out, work, log, args


FIELDS = ("vae_steps", "text_steps", "unet_steps", "unet_batch", "train_images", "threads")


def main(argv=None) -> int:
    run = start_run("edgeldm.zoo.train_tiny", __doc__, TinyTrainingConfig, FIELDS, argv)
    if run is None:
        return 1
    cfg, out, work, log, args = run

    from ..calibration.scenes import make_scenes
    from .clip_bpe import clip_tokenizer

    data = make_scenes(cfg.train_images, seed=cfg.seed, split="train")
    log(f"data: {len(data.images)} training scenes")
    vae = train_vae(cfg, data.images, work, log)
    lat_mean, lat_std, scaling_factor = encode_latents(vae, data.images, work, log)
    tokenizer = clip_tokenizer({"pad_token": "<|endoftext|>"})
    captioner = _Captioner(tokenizer, data.scenes, cfg.seed)
    te = train_text_encoder(cfg, captioner, data.labels, work, log)
    unet = train_unet(cfg, build_unet(cfg), _SDText(te, captioner), lat_mean, lat_std, scaling_factor, work, log)
    save_pipeline(cfg, vae, te, tokenizer, unet, scaling_factor, out, args.overwrite, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

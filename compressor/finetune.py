"""Recovery finetuning of a pruned UNet by knowledge distillation from the unpruned teacher (BK-SDM's recipe).

loss = w_task * ||eps_s - eps||^2 + w_out * ||eps_s - eps_t||^2 + w_feat * sum_stages ||f_s - f_t||^2

where ``f`` are the outputs of every down and up stage (forward hooks), ``eps_t`` the teacher's
prediction on the same noisy latent. The data needs no image set: latents the *teacher* generates for
calibration prompts, plus — for a model derived from ``tiny`` — ``tiny``'s own training scenes
through the VAE. Training runs under HF accelerate (``accelerate launch`` spreads it over GPUs
unchanged), checkpoints its full state every ``checkpoint_every`` steps into ``OUT.work/`` and resumes
from there.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger("edgeldm")


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-4
    warmup: int = 50
    task_weight: float = 1.0
    out_kd_weight: float = 1.0
    feat_kd_weight: float = 1.0
    teacher_samples: int = 1024  # calibration prompts the teacher draws latents for
    teacher_steps: int = 25
    guidance: float = 7.5
    scene_samples: int = 8000  # tiny's training scenes through the VAE (tiny-derived models only; 0: off)
    caption_dropout: float = 0.1
    checkpoint_every: int = 250
    seed: int = 0


class StageFeatures:
    """Forward hooks collecting the output of every down and up stage of a UNet."""

    def __init__(self, unet):
        self.outputs: list[torch.Tensor] = []
        self.handles = [blk.register_forward_hook(self._hook) for blk in (*unet.down_blocks, *unet.up_blocks)]

    def _hook(self, module, args, output):
        self.outputs.append(output[0] if isinstance(output, tuple) else output)

    def take(self) -> list[torch.Tensor]:
        out, self.outputs = self.outputs, []
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def build_dataset(teacher, source: str, config: FinetuneConfig, *, prompts_file=None) -> tuple[torch.Tensor, list[str]]:
    """(latents scaled like the UNet sees them, captions): teacher generations + tiny's scenes when they apply."""
    from ..calibration.prompts import calibration_prompts
    from ..generation import generate
    from ..lineage import derives_from_tiny

    prompts = calibration_prompts(source, config.teacher_samples, prompts_file=prompts_file, seed=config.seed + 1)
    seeds = [config.seed * 7919 + i for i in range(len(prompts))]
    logger.info("teacher latents: %d prompts, %d steps, guidance %g", len(prompts), config.teacher_steps,
                config.guidance)
    _, latents = generate(teacher, prompts, steps=config.teacher_steps, guidance=config.guidance, seeds=seeds,
                          batch_size=64)
    lat, caps = [torch.from_numpy(latents)], list(prompts)
    if config.scene_samples and prompts_file is None and derives_from_tiny(str(source)):
        from ..calibration.scenes import make_scenes

        scenes = make_scenes(config.scene_samples, seed=config.seed + 11, split="train")
        x = torch.from_numpy(scenes.images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        with torch.no_grad():
            z = torch.cat([teacher.vae.encode(x[i:i + 256]).latent_dist.sample(
                torch.Generator().manual_seed(config.seed + i)) for i in range(0, len(x), 256)])
        lat.append(z * teacher.vae.config.scaling_factor)
        caps += list(scenes.captions)
        logger.info("plus %d of tiny's training scenes", len(scenes.captions))
    return torch.cat(lat).float(), caps


def _encode_captions(pipe, captions: list[str]) -> torch.Tensor:
    with torch.no_grad():
        out = []
        for i in range(0, len(captions), 256):
            ids = pipe.tokenizer(captions[i:i + 256], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            out.append(pipe.text_encoder(ids)[0])
        return torch.cat(out)


def finetune(student_pipe, teacher_pipe, source: str, config: FinetuneConfig, *, work: Path,
             prompts_file=None) -> dict:
    """Train ``student_pipe.unet`` in place; returns the training summary. Resumes from ``work``."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

    from ..progress import progress_bar

    torch.manual_seed(config.seed)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    settings = json.dumps({"source": str(source), "config": asdict(config), "prompts_file": str(prompts_file)},
                          sort_keys=True)
    settings_file = work / "settings.json"
    if settings_file.is_file() and settings_file.read_text() != settings:
        from ..errors import EdgeLDMError

        raise EdgeLDMError(f"{work} holds an interrupted finetune with other settings",
                           hint="rerun with the same settings to resume, or delete that folder to start over")
    settings_file.write_text(settings)
    data_file = work / "data.pt"
    if data_file.is_file():  # the teacher's latents are part of the resumable state
        saved = torch.load(data_file, weights_only=True)
        latents, cond, uncond = saved["latents"], saved["cond"], saved["uncond"]
    else:
        latents, captions = build_dataset(teacher_pipe, source, config, prompts_file=prompts_file)
        cond, uncond = _encode_captions(teacher_pipe, captions), _encode_captions(teacher_pipe, [""])
        torch.save({"latents": latents, "cond": cond, "uncond": uncond}, data_file)
    logger.info("finetune data: %d latents %s", len(latents), tuple(latents.shape[1:]))

    accelerator = Accelerator()
    student, teacher = student_pipe.unet, teacher_pipe.unet
    teacher.requires_grad_(False).eval()
    student.requires_grad_(True).train()  # the student may come from a frozen copy (e.g. of the teacher)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, config.warmup)) * 0.5 * (
        1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    student, opt, sched = accelerator.prepare(student, opt, sched)
    teacher.to(accelerator.device)
    noise_sched = DDPMScheduler.from_config(teacher_pipe.scheduler.config)
    state_dir, progress_file = work / "state", work / "progress.json"
    start = 0
    if progress_file.is_file():
        accelerator.load_state(str(state_dir))
        start = json.loads(progress_file.read_text())["step"]
        logger.info("resuming finetune from step %d", start)
    fs, ft = StageFeatures(accelerator.unwrap_model(student)), StageFeatures(teacher)
    rng = np.random.default_rng(config.seed + start)
    history, t0, running = [], time.perf_counter(), None
    try:
        with progress_bar(total=config.steps, initial=start, desc="finetune", unit="step") as bar:
            for step in range(start, config.steps):
                idx = torch.from_numpy(rng.integers(len(latents), size=config.batch_size))
                x0 = latents[idx].to(accelerator.device)
                emb = cond[idx].clone()
                drop = torch.from_numpy(rng.random(config.batch_size) < config.caption_dropout)
                emb[drop] = uncond[0]
                emb = emb.to(accelerator.device)
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
                noise = noise.to(accelerator.device)
                t = torch.from_numpy(rng.integers(0, noise_sched.config.num_train_timesteps, size=config.batch_size))
                xt = noise_sched.add_noise(x0, noise, t.to(x0.device))
                with torch.no_grad():
                    eps_t = teacher(xt, t, emb).sample
                    feats_t = ft.take()
                eps_s = student(xt, t, emb).sample
                feats_s = fs.take()
                task = F.mse_loss(eps_s, noise)
                out_kd = F.mse_loss(eps_s, eps_t)
                feat_kd = sum((F.mse_loss(a, b) for a, b in zip(feats_s, feats_t) if a.shape == b.shape),
                              torch.zeros((), device=eps_s.device))
                loss = config.task_weight * task + config.out_kd_weight * out_kd + config.feat_kd_weight * feat_kd
                accelerator.backward(loss)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                vals = np.array([loss.item(), task.item(), out_kd.item(), feat_kd.item()])
                running = vals if running is None else 0.98 * running + 0.02 * vals
                bar.update(1)
                if (step + 1) % 50 == 0 or step + 1 == config.steps:
                    line = {"step": step + 1, "loss": running[0], "task": running[1], "out_kd": running[2],
                            "feat_kd": running[3], "seconds": round(time.perf_counter() - t0, 1)}
                    history.append(line)
                    logger.info("finetune step %d/%d  loss %.4f  task %.4f  out-KD %.4f  feat-KD %.4f", step + 1,
                                config.steps, *running)
                if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                    accelerator.save_state(str(state_dir))
                    progress_file.write_text(json.dumps({"step": step + 1}))
    finally:
        fs.remove()
        ft.remove()
    student_pipe.unet = accelerator.unwrap_model(student).eval()
    return {"config": asdict(config), "history": history, "resumed_from": start,
            "seconds": round(time.perf_counter() - t0, 1), "data": len(latents)}

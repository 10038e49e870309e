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

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .finetune_config import FinetuneConfig  # noqa: F401  (re-exported: finetune(..., config))

logger = logging.getLogger("edgeldm")


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


def finetune(student_pipe, teacher_pipe, source: str, config: FinetuneConfig, *, work: Path,
             prompts_file=None, data_cache: Path | None = None) -> dict:
    """Train ``student_pipe.unet`` in place; returns the training summary. Resumes from ``work``.

    ``data_cache``: a folder of teacher generations shared with other training runs (``--data-cache``)."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

    from ..progress import progress_bar
    from .conditioning import unet_text_inputs
    from .training import RunningLosses, WorkDir, adamw, teacher_dataset, warmup_cosine

    torch.manual_seed(config.seed)
    work = WorkDir(work, "finetune", {"source": str(source), "config": asdict(config),
                                      "prompts_file": str(prompts_file)})

    accelerator = Accelerator()
    teacher_pipe.to(accelerator.device)  # the teacher's data are generated where it trains: a GPU if there is one
    with accelerator.main_process_first():  # built and saved once; the other processes load the file
        data = work.data(lambda: teacher_dataset(teacher_pipe, source, samples=config.teacher_samples,
                                                 steps=config.teacher_steps, guidance=config.guidance,
                                                 scene_samples=config.scene_samples, seed=config.seed,
                                                 prompts_file=prompts_file, cache=data_cache))
    latents, cond, uncond = data["latents"], data["cond"], data["uncond"]
    logger.info("finetune data: %d latents %s", len(latents), tuple(latents.shape[1:]))

    student, teacher = student_pipe.unet, teacher_pipe.unet
    teacher.requires_grad_(False).eval()
    student.requires_grad_(True).train()  # the student may come from a frozen copy (e.g. of the teacher)
    opt = adamw(student.parameters(), config.lr)
    sched = warmup_cosine(opt, config.warmup, config.steps)
    student, opt, sched = accelerator.prepare(student, opt, sched)
    noise_sched = DDPMScheduler.from_config(teacher_pipe.scheduler.config)
    start = work.resume(accelerator)
    fs, ft = StageFeatures(accelerator.unwrap_model(student)), StageFeatures(teacher)
    # one stream per process and resume point: under `accelerate launch` every rank draws its own batches
    rng = np.random.default_rng([config.seed, start, accelerator.process_index])
    guided = config.guided_kd_weight > 0
    losses = RunningLosses(("loss", "task", "out_kd", "feat_kd") + (("guided_kd",) if guided else ()), "finetune",
                           config.steps)
    t0 = time.perf_counter()
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
                t = t.to(x0.device)  # the UNet embeds a 1-d timestep where it is, not where the sample is
                xt = noise_sched.add_noise(x0, noise, t)
                if guided:  # the same noisy latents once more, without their captions, in the same call
                    xt, t, noise = torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([noise, noise])
                    emb = torch.cat([emb, uncond[:1].to(emb.device).expand_as(emb)])
                text = unet_text_inputs(teacher, emb, xt, teacher_pipe.vae_scale_factor)
                with torch.no_grad():
                    eps_t = teacher(xt, t, **text).sample
                    feats_t = ft.take()
                eps_s = student(xt, t, **text).sample
                feats_s = fs.take()
                task = F.mse_loss(eps_s, noise)
                out_kd = F.mse_loss(eps_s, eps_t)
                feat_kd = sum((F.mse_loss(a, b) for a, b in zip(feats_s, feats_t) if a.shape == b.shape),
                              torch.zeros((), device=eps_s.device))
                loss = config.task_weight * task + config.out_kd_weight * out_kd + config.feat_kd_weight * feat_kd
                guided_kd = torch.zeros((), device=eps_s.device)
                if guided:
                    g = config.guided_kd_scale
                    (s_c, s_u), (t_c, t_u) = eps_s.chunk(2), eps_t.chunk(2)
                    guided_kd = F.mse_loss(s_u + g * (s_c - s_u), t_u + g * (t_c - t_u))
                    loss = loss + config.guided_kd_weight * guided_kd
                accelerator.backward(loss)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.update(step + 1, time.perf_counter() - t0, loss=loss, task=task, out_kd=out_kd,
                              feat_kd=feat_kd, guided_kd=guided_kd)
                bar.update(1)
                if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                    work.checkpoint(accelerator, step + 1)
    finally:
        fs.remove()
        ft.remove()
    student_pipe.unet = accelerator.unwrap_model(student).eval()
    return {"config": asdict(config), "history": losses.history, "resumed_from": start,
            "seconds": round(time.perf_counter() - t0, 1), "data": len(latents)}

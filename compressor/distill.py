"""Latent consistency distillation (Luo et al. 2023): any UNet edgeldm loads becomes a 1-4-step model.

One training step, for a batch of teacher-made latents x0 and their prompts:

1. pick a point of the skipping schedule (``ddim_steps`` points, k = 1000 / ddim_steps apart), noise x0 to
   t_{n+k} and draw a guidance scale w ~ U[w_min, w_max] (w is the paper's omega, i.e. diffusers'
   ``guidance_scale - 1``);
2. the student maps x_{t_{n+k}} to a consistency output c_skip * x + c_out * x0_pred — seeing w through
   the guidance embedding (``time_cond_proj_dim``), so sampling needs one UNet call per step;
3. the teacher takes one classifier-free-guided DDIM step t_{n+k} -> t_n;
4. the target network — an EMA of the student (LCM) or the student itself without gradients
   (LCM-LoRA, as in its paper) — maps x_{t_n} to its consistency output, and the loss pulls (2) to it.

``lcm`` trains every weight of a copy of the teacher plus the guidance embedding's projection (zero
initialised, so step 0 is the teacher); ``lcm-lora`` trains only a LoRA adapter through peft and writes it
as a diffusers LoRA file. Training data are prompts: the teacher generates the latents (``tiny``'s own
captions when the teacher derives from ``tiny``). Runs under HF accelerate, resumable from ``OUT.work/``.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

# the runtime samplers' x0/eps formula: plain arithmetic, so torch tensors (per-sample alphas) go through it too
from ..runtimes.samplers.base import predict_x0_and_eps as x0_and_eps
from .distill_config import LOSSES, MODES, DistillConfig  # noqa: F401  (re-exported)

logger = logging.getLogger("edgeldm")

LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' name: `pipe.load_lora_weights(folder)` finds it
# the layers diffusers' LCM-LoRA recipe adapts
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")
SIGMA_DATA = 0.5  # boundary condition of consistency models, as diffusers' LCMScheduler fixes it


# --- the consistency-model arithmetic ---------------------------------------------------------------


def boundary_scalings(t: torch.Tensor, timestep_scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip, c_out of the consistency parameterisation (c_skip -> 1, c_out -> 0 as t -> 0)."""
    scaled = t.double() * timestep_scaling
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip.float(), c_out.float()


def consistency_loss(a: torch.Tensor, b: torch.Tensor, kind: str, c: float | None) -> torch.Tensor:
    d = (a.float() - b.float())
    if kind == "l2":
        return d.pow(2).mean()
    if kind == "huber":  # pseudo-Huber: quadratic near 0, linear in the tails
        c = 0.001 if c is None else c
        return (torch.sqrt(d.pow(2) + c * c) - c).mean()
    c = 0.05 if c is None else c  # Cauchy: bounded influence of outliers
    return torch.log1p(d.pow(2) / (2 * c * c)).mean()


class SkippingSchedule:
    """The teacher's DDIM solver over ``ddim_steps`` timesteps k apart (what LCM's paper calls the skipping step)."""

    def __init__(self, alphas_cumprod: torch.Tensor, ddim_steps: int, prediction_type: str = "epsilon"):
        total = len(alphas_cumprod)
        self.k = total // ddim_steps
        self.timesteps = torch.from_numpy((np.arange(1, ddim_steps + 1) * self.k).round().astype(np.int64) - 1)
        self.alphas = alphas_cumprod.float()
        self.alpha_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[self.timesteps[:-1]]]).float()
        self.prediction_type = prediction_type

    def ddim_step(self, x0: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        a = self.alpha_prev[index].view(-1, 1, 1, 1).to(x0.device)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps


def guided_step_terms(teacher, solver: SkippingSchedule, xt, t_start, index, emb, uncond, vae_scale_factor: int = 8
                      ) -> tuple:
    """The teacher's classifier-free-guided DDIM step t_{n+k} -> t_n as (p, q) with x_prev = p + w * q.

    The step ddim(x0_c + w (x0_c - x0_u), eps_c + w (eps_c - eps_u)) is linear in the guidance weight w,
    so one pair of teacher predictions (conditional, unconditional) serves every w.
    """
    from .conditioning import unet_text_inputs

    dev, n = xt.device, len(xt)
    pair = torch.cat([xt, xt])
    both = teacher(pair, torch.cat([t_start, t_start]).to(dev), **unet_text_inputs(
        teacher, torch.cat([emb, uncond.expand(n, -1, -1).to(dev)]), pair, vae_scale_factor)).sample
    alpha = solver.alphas[t_start].view(-1, 1, 1, 1).to(dev)
    x0_c, eps_c = x0_and_eps(both[:n], xt, alpha, solver.prediction_type)
    x0_u, eps_u = x0_and_eps(both[n:], xt, alpha, solver.prediction_type)
    return solver.ddim_step(x0_c, eps_c, index), solver.ddim_step(x0_c - x0_u, eps_c - eps_u, index)


def teacher_step_table(teacher, solver: SkippingSchedule, noise_sched, latents, cond, uncond, *, draws: int,
                       seed: int, batch_size: int = 64, vae_scale_factor: int = 8) -> dict:
    """The teacher's guided step for ``draws`` (noise, schedule point) draws per latent, computed once.

    Rows: latent index, noise, schedule index and the step's (p, q); the training loop then runs no teacher
    and draws a fresh w for every reuse of a row. On 2 CPU cores the teacher is ~40 % of an LCM step of
    ``tiny``; the table costs one teacher call per row instead of one per row *per epoch*.
    """
    from ..progress import progress_bar

    n = len(latents) * draws
    rng = np.random.default_rng([seed, 0x7ab1e])
    latent = torch.arange(len(latents)).repeat(draws)
    index = torch.from_numpy(rng.integers(0, len(solver.timesteps), size=n))
    noise = torch.randn((n, *latents.shape[1:]), generator=torch.Generator().manual_seed(seed + 0x7ab1e))
    p, q = torch.empty_like(noise), torch.empty_like(noise)
    dev = next(teacher.parameters()).device
    logger.info("teacher steps: %d latents x %d draws (%.0f MB)", len(latents), draws,
                3 * noise.numel() * noise.element_size() / 2**20)
    with torch.no_grad(), progress_bar(total=n, desc="teacher steps", unit="row") as bar:
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            t = solver.timesteps[index[sl]]
            xt = noise_sched.add_noise(latents[latent[sl]], noise[sl], t).to(dev)
            a, b = guided_step_terms(teacher, solver, xt, t, index[sl], cond[latent[sl]].to(dev), uncond,
                                     vae_scale_factor)
            p[sl], q[sl] = a.cpu(), b.cpu()
            bar.update(len(t))
    return {"latent": latent, "index": index, "noise": noise, "p": p, "q": q}


# --- the student --------------------------------------------------------------------------------


def add_guidance_embedding(unet, dim: int):
    """Give ``unet`` diffusers' guidance-scale input (``time_cond_proj_dim``) with a zero projection.

    Zero makes the fresh student exactly the teacher; works on a pruned UNet too (it edits the module, not
    the config it was built from).
    """
    emb = unet.time_embedding
    if getattr(unet.config, "time_cond_proj_dim", None):
        return unet
    emb.cond_proj = torch.nn.Linear(dim, emb.linear_1.in_features, bias=False)
    torch.nn.init.zeros_(emb.cond_proj.weight)
    unet.register_to_config(time_cond_proj_dim=dim)
    return unet


def lcm_scheduler(teacher_pipe, config: DistillConfig):
    from diffusers import LCMScheduler

    return LCMScheduler.from_config(teacher_pipe.scheduler.config, original_inference_steps=config.ddim_steps,
                                    timestep_scaling=config.timestep_scaling)


def check_same_latent_space(model_pipe, teacher_pipe, model: str, teacher: str) -> None:
    """A teacher other than the model must condition and denoise in the same spaces: same text encoder,
    VAE latents, UNet inputs and noise schedule (only the UNet's inside may differ — pruned, narrowed)."""
    from ..errors import EdgeLDMError

    checks = {
        "text encoder": lambda p: {k: getattr(p.text_encoder.config, k) for k in ("hidden_size", "vocab_size",
                                                                                     "num_hidden_layers")},
        "VAE latents": lambda p: {k: p.vae.config[k] for k in ("latent_channels", "scaling_factor")},
        "UNet inputs": lambda p: {k: p.unet.config[k] for k in ("in_channels", "out_channels", "cross_attention_dim",
                                                               "sample_size")},
        "noise schedule": lambda p: {k: p.scheduler.config.get(k) for k in ("num_train_timesteps", "beta_schedule",
                                                                            "beta_start", "beta_end",
                                                                            "prediction_type")},
    }
    for what, get in checks.items():
        a, b = get(model_pipe), get(teacher_pipe)
        if a != b:
            diff = ", ".join(f"{k} {a[k]} vs {b[k]}" for k in a if a[k] != b.get(k))
            raise EdgeLDMError(f"--teacher {teacher} does not share {model}'s {what}: {diff}",
                               hint="the teacher must be the model the student was pruned or finetuned from")
    same = all(torch.equal(x, y.to(x.dtype)) for x, y in zip(model_pipe.text_encoder.state_dict().values(),
                                                             teacher_pipe.text_encoder.state_dict().values()))
    if not same:
        logger.warning("--teacher %s has other text-encoder weights than %s: the student learns from the "
                       "teacher's conditioning but ships with the model's", teacher, model)


def student_pipeline(teacher_pipe, unet, config: DistillConfig):
    """The teacher's pipeline with the student UNet and an LCM scheduler (for validation and saving)."""
    return type(teacher_pipe)(**{**teacher_pipe.components, "unet": unet, "scheduler": lcm_scheduler(teacher_pipe,
                                                                                                       config)})


def _guidance_embedding(pipe, w: torch.Tensor, dim: int) -> torch.Tensor:
    return pipe.get_guidance_scale_embedding(w, embedding_dim=dim)


# --- validation -----------------------------------------------------------------------------------


def ode_agreement(teacher_pipe, unet, config: DistillConfig, prompts: list[str], *, seed: int = 1234) -> dict:
    """How close one student step lands to the teacher's guided probability-flow ODE (DDIM, 25 steps).

    Consistency distillation trains exactly this: the same start noise should map to the same x0.
    Returns latent PSNR (peak = the teacher latents' range) for 1 and 4 student steps.
    """
    from diffusers import DDIMScheduler

    from ..generation import generate

    seeds = [seed + i for i in range(len(prompts))]
    ddim = type(teacher_pipe)(**{**teacher_pipe.components,
                                 "scheduler": DDIMScheduler.from_config(teacher_pipe.scheduler.config)})
    _, ref = generate(ddim, prompts, steps=25, guidance=config.teacher_equivalent_guidance, seeds=seeds,
                      batch_size=32, decode=False)
    student = student_pipeline(teacher_pipe, unet, config)
    peak = float(ref.max() - ref.min())
    out = {}
    for steps in (1, 4):
        _, lat = generate(student, prompts, steps=steps, guidance=config.default_guidance, seeds=seeds,
                          batch_size=32, decode=False)
        mse = float(np.mean((lat - ref) ** 2))
        out[f"latent_psnr_{steps}step_db"] = round(float(10 * np.log10(peak**2 / max(mse, 1e-20))), 2)
    return out


def validation_sheet(teacher_pipe, unet, config: DistillConfig, prompts: list[str], path: Path) -> None:
    """A PNG: one row per prompt, columns = 1, 2, 4 student steps."""
    from PIL import Image

    from ..atomic import atomic_write_bytes, png_bytes
    from ..generation import generate

    student = student_pipeline(teacher_pipe, unet, config)
    cols = []
    for steps in (1, 2, 4):
        imgs, _ = generate(student, prompts, steps=steps, guidance=config.default_guidance,
                           seeds=[100 + i for i in range(len(prompts))])
        cols.append(np.concatenate(list(imgs), axis=0))
    atomic_write_bytes(path, png_bytes(Image.fromarray(np.concatenate(cols, axis=1))))


# --- training -----------------------------------------------------------------------------------


def make_student(teacher_unet, config: DistillConfig):
    student = copy.deepcopy(teacher_unet)
    if config.mode == "lcm":
        return add_guidance_embedding(student, config.guidance_embedding_dim).requires_grad_(True)
    from ..errors import EdgeLDMError

    try:
        from peft import LoraConfig
    except ImportError:
        raise EdgeLDMError("--mode lcm-lora needs peft", hint="pip install 'edgeldm[compress]'") from None
    student.requires_grad_(False)
    names = {n for n, _ in student.named_modules()}
    targets = [t for t in LORA_TARGETS if any(n == t or n.endswith("." + t) for n in names)]
    student.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank, init_lora_weights="gaussian",
                                   target_modules=targets))
    return student


def distill(teacher_pipe, source: str, config: DistillConfig, *, work: Path, prompts_file=None,
            student_unet=None, teacher_name: str | None = None, data_cache: Path | None = None) -> tuple:
    """Distil ``teacher_pipe``'s UNet into a consistency student; returns (student UNet, summary).

    The student starts as a copy of ``student_unet`` (default: the teacher's UNet) — e.g. a pruned UNet
    learning from the unpruned teacher, which compounds pruning and few-step sampling in one training run
    instead of inheriting a pruned teacher's losses. The two must share the text encoder and latent space.
    """
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

    from ..progress import progress_bar
    from .conditioning import unet_text_inputs
    from .training import RunningLosses, WorkDir, adamw, teacher_dataset, warmup_cosine

    config.check()
    torch.manual_seed(config.seed)
    work = WorkDir(work, "distill", {"source": str(source), "config": asdict(config),
                                     "prompts_file": str(prompts_file), "teacher": teacher_name})

    accelerator = Accelerator()
    # the teacher generates its data and the validation images where the student trains: a GPU if there is one
    teacher_pipe.to(accelerator.device)
    with accelerator.main_process_first():  # built and saved once; the other processes load the file
        data = work.data(lambda: teacher_dataset(teacher_pipe, source, samples=config.teacher_samples,
                                                 steps=config.teacher_steps, guidance=config.teacher_guidance,
                                                 seed=config.seed, prompts_file=prompts_file,
                                                 cache=data_cache))
    latents, cond, uncond, captions = data["latents"], data["cond"], data["uncond"], data["captions"]
    logger.info("distillation data: %d teacher latents %s", len(latents), tuple(latents.shape[1:]))

    teacher = teacher_pipe.unet.requires_grad_(False).eval()
    student = make_student(teacher if student_unet is None else student_unet, config).train()
    target = None
    if config.mode == "lcm":  # the EMA target network; LCM-LoRA uses the student itself
        target = copy.deepcopy(student).requires_grad_(False).eval()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = adamw(params, config.lr)
    sched = warmup_cosine(opt, config.warmup, config.steps)
    student, opt, sched = accelerator.prepare(student, opt, sched)
    if target is not None:
        target.to(accelerator.device)
        accelerator.register_for_checkpointing(target)
    noise_sched = DDPMScheduler.from_config(teacher_pipe.scheduler.config)
    prediction_type = noise_sched.config.prediction_type
    factor = teacher_pipe.vae_scale_factor
    solver = SkippingSchedule(noise_sched.alphas_cumprod, config.ddim_steps, prediction_type)
    table, table_seconds = None, 0.0
    if config.teacher_draws:
        t_table = time.perf_counter()
        with accelerator.main_process_first():
            table = work.data(lambda: teacher_step_table(teacher, solver, noise_sched, latents, cond, uncond,
                                                         draws=config.teacher_draws, seed=config.seed,
                                                         vae_scale_factor=factor),
                              name="teacher_steps")
        table_seconds = time.perf_counter() - t_table
    start = work.resume(accelerator)
    # one stream per process and resume point: under `accelerate launch` every rank draws its own batches
    rng = np.random.default_rng([config.seed, start, accelerator.process_index])
    losses = RunningLosses(("loss",), "distill", config.steps)
    validation_prompts = list(dict.fromkeys(captions))[:config.validation_prompts]
    validations, t0 = [], time.perf_counter()
    dev = accelerator.device

    def per_sample(v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, 1, 1, 1).to(dev)

    with progress_bar(total=config.steps, initial=start, desc=f"distill ({config.mode})", unit="step") as bar:
        for step in range(start, config.steps):
            if table is None:
                idx = torch.from_numpy(rng.integers(len(latents), size=config.batch_size))
                noise = torch.randn((len(idx), *latents.shape[1:]),
                                    generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
                index = torch.from_numpy(rng.integers(0, config.ddim_steps, size=config.batch_size))
            else:  # a row of precomputed teacher steps: its latent, noise draw and schedule point
                rows = torch.from_numpy(rng.integers(len(table["latent"]), size=config.batch_size))
                idx, noise, index = table["latent"][rows], table["noise"][rows], table["index"][rows]
            x0, emb, noise = latents[idx].to(dev), cond[idx].to(dev), noise.to(dev)
            t_start = solver.timesteps[index]
            t_end = (t_start - solver.k).clamp(min=0)
            w = torch.from_numpy(rng.uniform(config.w_min, config.w_max, size=config.batch_size)).float()
            w_emb = _guidance_embedding(teacher_pipe, w, config.guidance_embedding_dim).to(dev) \
                if config.mode == "lcm" else None
            xt = noise_sched.add_noise(x0, noise, t_start)
            skip_s, out_s = boundary_scalings(t_start, config.timestep_scaling)
            skip_e, out_e = boundary_scalings(t_end, config.timestep_scaling)

            text = unet_text_inputs(teacher, emb, xt, factor)
            pred = student(xt, t_start.to(dev), **text, timestep_cond=w_emb).sample
            x0_s, _ = x0_and_eps(pred, xt, per_sample(solver.alphas[t_start]), prediction_type)
            model_out = per_sample(skip_s) * xt + per_sample(out_s) * x0_s

            with torch.no_grad():
                if table is None:
                    p, q = guided_step_terms(teacher, solver, xt, t_start, index, emb, uncond, factor)
                else:
                    p, q = table["p"][rows].to(dev), table["q"][rows].to(dev)
                x_prev = p + per_sample(w) * q
                net = target if target is not None else student
                pred_t = net(x_prev, t_end.to(dev), **text, timestep_cond=w_emb).sample
                x0_t, _ = x0_and_eps(pred_t, x_prev, per_sample(solver.alphas[t_end]), prediction_type)
                target_out = per_sample(skip_e) * x_prev + per_sample(out_e) * x0_t

            loss = consistency_loss(model_out, target_out, config.loss, config.loss_c)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if target is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(list(target.parameters()),
                                         list(accelerator.unwrap_model(student).parameters()),
                                         1.0 - config.ema_decay)
            losses.update(step + 1, time.perf_counter() - t0, loss=loss)
            bar.update(1)
            done = step + 1
            if accelerator.is_main_process and config.validate_every and validation_prompts and (
                    done % config.validate_every == 0 or done == config.steps):
                net = target if target is not None else accelerator.unwrap_model(student)
                net.eval()
                validation_sheet(teacher_pipe, net, config, validation_prompts,
                                 work.path / "validation" / f"step_{done:06d}.png")
                metrics = ode_agreement(teacher_pipe, net, config, validation_prompts * 4)
                validations.append({"step": done, **metrics})
                logger.info("distill validation at step %d: %s", done, metrics)
                accelerator.unwrap_model(student).train()
            if done % config.checkpoint_every == 0 and done < config.steps:
                work.checkpoint(accelerator, done)
    final = target if target is not None else accelerator.unwrap_model(student)
    summary = {"config": asdict(config), "teacher": teacher_name, "history": losses.history, "validation": validations,
               "resumed_from": start, "seconds": round(time.perf_counter() - t0, 1), "data": len(latents),
               "teacher_steps_seconds": round(table_seconds, 1)}
    return final.eval(), summary


def save_distilled(model_pipe, student, config: DistillConfig, out: str | Path, *, base: str, summary: dict,
                   plan=None, overwrite: bool = False, protect: tuple = ()) -> Path:
    """A standard diffusers folder with an ``LCMScheduler``, written atomically; ``model_pipe`` is the model
    the student started from (the teacher unless another one taught it).

    ``lcm``: the student UNet (``time_cond_proj_dim`` set); ``lcm-lora``: the model's UNet unchanged plus
    ``pytorch_lora_weights.safetensors`` (diffusers' LoRA format: ``pipe.load_lora_weights`` takes it, and
    ``load_pipeline`` fuses it). A pruned teacher's plan travels along, so the result reloads the same way.
    """
    import json

    from ..atomic import atomic_output_dir
    from ..lineage import write_lineage
    from ..saving import save_pipeline
    from .plan import PLAN_FILE

    unet = student if config.mode == "lcm" else model_pipe.unet
    pipe = student_pipeline(model_pipe, unet, config)
    sampling = {"steps": 4, "guidance": config.default_guidance, "guidance_embedding": config.mode == "lcm"}
    with atomic_output_dir(out, overwrite=overwrite, protect=protect) as tmp:
        save_pipeline(pipe, tmp)
        if plan is not None and plan.operations:
            (tmp / "unet" / PLAN_FILE).write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
        if config.mode == "lcm-lora":
            from peft.utils import get_peft_model_state_dict

            # peft's key format as is: diffusers' converter would turn only the attention keys into its legacy
            # "lora.down/up" names, which its own loader then drops with a warning
            layers = get_peft_model_state_dict(student)
            type(model_pipe).save_lora_weights(str(tmp), unet_lora_layers=layers, safe_serialization=True)
        write_lineage(tmp, base, "distill", mode=config.mode, sampling=sampling,
                      distill={k: v for k, v in summary.items() if k != "history"})
    return Path(out)

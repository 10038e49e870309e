"""``edgeldm.distill``: latent consistency distillation of a model into a 1-4-step student."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..arguments import SEED
from ..compressor.distill_config import LOSSES, MODES, DistillConfig as _Defaults
from ..errors import EdgeLDMError
from ..options import check_positive, option, resolve, to_config
from .common import (
    StageResult, TEACHER_STEPS_HELP, check_output, existing, is_main_process, remove_work, same_model,
    weights_bytes,
)

#: the model families the training loops take (compressor/conditioning.py: SDXL's added conditions)
FAMILIES = ("sd", "sdxl")


@dataclass(frozen=True)
class DistillOptions:
    teacher: str | None = option(
        None, "teach the student with another model than MODEL, e.g. the unpruned model a pruned MODEL came from: "
              "the student starts from MODEL's UNet and learns the teacher's trajectories (same text encoder and "
              "latents; default: MODEL teaches itself)", metavar="MODEL")
    mode: str = option(_Defaults.mode, "lcm: a copy of the UNet with a guidance-scale embedding; lcm-lora: a LoRA "
                                       "adapter only, sampled without guidance", choices=MODES)
    steps: int = option(_Defaults.steps, "optimizer steps")
    batch_size: int = option(_Defaults.batch_size, "latents per step")
    lr: float = option(_Defaults.lr, "peak learning rate, cosine decay")
    w_min: float = option(_Defaults.w_min, "smallest guidance weight omega = guidance scale - 1 the student learns")
    w_max: float = option(_Defaults.w_max, "largest one")
    ddim_steps: int = option(_Defaults.ddim_steps, "points of the teacher's skipping schedule; k = 1000 / N")
    loss: str = option(_Defaults.loss, "consistency loss; huber = pseudo-Huber", choices=LOSSES)
    loss_c: float | None = option(_Defaults.loss_c, "scale c of the huber / cauchy loss (default 0.001 / 0.05)")
    ema_decay: float = option(_Defaults.ema_decay, "EMA rate of the target network, lcm mode")
    lora_rank: int = option(_Defaults.lora_rank, "LoRA rank, lcm-lora mode")
    teacher_samples: int = option(_Defaults.teacher_samples, "latents the teacher generates as training data")
    teacher_steps: int = option(_Defaults.teacher_steps, TEACHER_STEPS_HELP)
    teacher_draws: int = option(
        _Defaults.teacher_draws, "precompute the teacher's guided steps for K noise draws per teacher latent and "
                                 "reuse them (a fresh guidance weight each time), so training runs no teacher; 0: "
                                 "run it live on fresh noise every step, as LCM does", metavar="K")
    prompts: str | None = option(None, "training prompts, one per line", metavar="FILE")
    validate_every: int = option(_Defaults.validate_every, "validation images + ODE agreement every N steps; 0: only "
                                                           "at the end")
    validation_prompts: int = option(_Defaults.validation_prompts, "prompts of the validation (4 seeds each in the "
                                     "ODE agreement); 0: none - a CPU run of an SD-size teacher at 512 px spends "
                                     "half an hour on the default's 25-step teacher images")
    seed: int = option(_Defaults.seed, "random seed", parse=SEED)

    def config(self) -> _Defaults:
        check_positive(self, "steps", "batch_size", "teacher_samples", "teacher_steps", "ddim_steps", "lora_rank",
                       "lr")
        config = to_config(_Defaults, self, validate_every=self.validate_every or self.steps)
        config.check()
        return config


def distill(model: str | Path, output: str | Path, options: DistillOptions | None = None, *,
            overwrite: bool = False, allow_pickle: bool = False, data_cache: str | Path | None = None,
            **kwargs) -> StageResult:
    """Distil ``model`` (or, with ``teacher``, another model's trajectories into ``model``'s UNet) into a
    latent consistency model at ``output``; checkpoints in ``OUTPUT.work/``, validation sheets kept."""
    from ..compressor.distill import check_same_latent_space, distill as train, save_distilled
    from ..compressor.plan import read_plan
    from ..lineage import lineage_base
    from ..loading import load_pipeline

    options = resolve(DistillOptions, options, kwargs)
    config = options.config()
    model, out = str(model), Path(output)
    teacher = options.teacher
    check_output(out, overwrite, inputs=(model, teacher))
    pipe = load_pipeline(model, allow_pickle=allow_pickle, families=FAMILIES)
    if teacher is not None and same_model(teacher, model):
        teacher = None  # --teacher MODEL is the default: one load, and no second copy in memory
    teacher_pipe = pipe if teacher is None else load_pipeline(teacher, allow_pickle=allow_pickle, families=FAMILIES)
    for name, p in ((model, pipe), (teacher, teacher_pipe)):
        if getattr(p.unet.config, "time_cond_proj_dim", None):
            raise EdgeLDMError(f"{name} already has a guidance embedding (it is an LCM)",
                               hint="distil its teacher instead")
    if teacher_pipe is not pipe:
        check_same_latent_space(pipe, teacher_pipe, model, teacher)
    # tiny's captions (the training data) follow the teacher's lineage: it generates the latents
    student, summary = train(teacher_pipe, lineage_base(teacher or model), config, work=Path(f"{out}.work"),
                             prompts_file=options.prompts,
                             student_unet=None if teacher_pipe is pipe else pipe.unet,
                             teacher_name=None if teacher_pipe is pipe else lineage_base(teacher),
                             data_cache=Path(data_cache) if data_cache else None)
    if not is_main_process():
        return StageResult("distill", None, {})
    plan = read_plan(Path(model) / "unet") if Path(model).is_dir() else None
    save_distilled(pipe, student, config, out, base=lineage_base(model), summary=summary, plan=plan,
                   overwrite=overwrite, protect=existing(model, teacher))
    validation = Path(f"{out}.work") / "validation"
    if validation.is_dir():  # the validation sheets are worth keeping; the rest of the state is spent
        shutil.copytree(validation, out / "validation", dirs_exist_ok=True)
    remove_work(out)
    return StageResult("distill", out, distilled_metrics(out), summary)


def distilled_metrics(model) -> dict:
    from ..lineage import read_lineage

    validation = (read_lineage(Path(model)) or {}).get("distill", {}).get("validation") or [{}]
    # None, not NaN, without validation (--validation-prompts 0): stage.json stays strict JSON, and a gate on
    # it says the metric was not measured instead of comparing a NaN
    return {"size_bytes": weights_bytes(model),
            "ode_psnr_1step": validation[-1].get("latent_psnr_1step_db")}

"""``edgeldm.finetune``: recover a pruned model by knowledge distillation from its unpruned teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..arguments import GUIDANCE, SEED
from ..compressor.finetune_config import FinetuneConfig as _Defaults
from ..errors import EdgeLDMError
from ..options import check_positive, option, resolve, to_config
from .common import StageResult, TEACHER_STEPS_HELP, check_output, existing, is_main_process, remove_work, weights_bytes

#: the model families the training loops take (compressor/conditioning.py: SDXL's added conditions)
FAMILIES = ("sd", "sdxl")


@dataclass(frozen=True)
class FinetuneOptions:
    teacher: str | None = option(None, "the unpruned model (folder or zoo name); required")
    steps: int = option(_Defaults.steps, "optimizer steps")
    batch_size: int = option(_Defaults.batch_size, "latents per step")
    lr: float = option(_Defaults.lr, "peak learning rate, cosine decay")
    task_weight: float = option(_Defaults.task_weight, "weight of the denoising loss")
    out_kd_weight: float = option(_Defaults.out_kd_weight, "weight of output KD")
    feat_kd_weight: float = option(_Defaults.feat_kd_weight, "weight of stage-feature KD")
    guided_kd_weight: float = option(
        _Defaults.guided_kd_weight, "weight of guided-output KD: each latent also runs without its caption and the "
                                    "student's classifier-free-guided prediction is matched to the teacher's (2x the "
                                    "UNet work per step; default 0: off)")
    guided_kd_scale: float = option(_Defaults.guided_kd_scale, "guidance scale of that guided prediction (the "
                                                               "sampling default)", parse=GUIDANCE)
    teacher_samples: int = option(_Defaults.teacher_samples, "teacher-generated latents")
    teacher_steps: int = option(_Defaults.teacher_steps, TEACHER_STEPS_HELP)
    scene_samples: int = option(_Defaults.scene_samples, "tiny's training scenes added for tiny-derived models; "
                                                         "0: none")
    prompts: str | None = option(None, "calibration prompts, one per line", metavar="FILE")
    seed: int = option(_Defaults.seed, "random seed", parse=SEED)

    def config(self) -> _Defaults:
        check_positive(self, "steps", "batch_size", "teacher_samples", "teacher_steps")
        if self.guided_kd_weight < 0:
            raise EdgeLDMError(f"--guided-kd-weight must be >= 0, got {self.guided_kd_weight}", hint="0 turns it off")
        return to_config(_Defaults, self)


def finetune(pruned: str | Path, output: str | Path, options: FinetuneOptions | None = None, *,
             overwrite: bool = False, allow_pickle: bool = False, data_cache: str | Path | None = None,
             **kwargs) -> StageResult:
    """Finetune ``pruned`` against ``options.teacher`` and write the recovered model to ``output``.

    Checkpoints go to ``OUTPUT.work/`` (a rerun resumes from them, removed once the model is written);
    ``data_cache`` shares the teacher's generations with other runs taught by the same teacher.
    """
    from ..compressor.finetune import finetune as train
    from ..compressor.plan import PruningPlan, read_plan
    from ..compressor.prune import save_pruned
    from ..lineage import lineage_base
    from ..loading import load_pipeline

    options = resolve(FinetuneOptions, options, kwargs)
    if options.teacher is None:
        raise EdgeLDMError("finetune needs a teacher: the unpruned model", hint="pass --teacher MODEL")
    config = options.config()
    pruned, teacher, out = str(pruned), str(options.teacher), Path(output)
    check_output(out, overwrite, inputs=(pruned, teacher))
    student = load_pipeline(pruned, allow_pickle=allow_pickle, families=FAMILIES)
    teacher_pipe = load_pipeline(teacher, allow_pickle=allow_pickle, families=FAMILIES)
    summary = train(student, teacher_pipe, lineage_base(pruned), config, work=Path(f"{out}.work"),
                    prompts_file=options.prompts, data_cache=Path(data_cache) if data_cache else None)
    if not is_main_process():
        return StageResult("finetune", None, {})
    plan = read_plan(Path(pruned) / "unet") if Path(pruned).is_dir() else None
    if plan is None:
        plan = PruningPlan(base=lineage_base(pruned))
    plan.report = {**plan.report, "finetune": {**summary, "teacher": lineage_base(teacher)}}
    plan.base = lineage_base(pruned)
    save_pruned(student, plan, out, overwrite=overwrite, protect=existing(pruned, teacher), stage="finetune")
    remove_work(out)
    return StageResult("finetune", out, finetuned_metrics(out), summary)


def finetuned_metrics(model) -> dict:
    from ..compressor.plan import read_plan

    history = read_plan(Path(model) / "unet").report.get("finetune", {}).get("history") or [{}]
    return {"size_bytes": weights_bytes(model), "final_loss": history[-1].get("loss", float("nan"))}

"""The settings of ``edgeldm distill``: torch-free, so the CLI can show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("lcm", "lcm-lora")
LOSSES = ("l2", "huber", "cauchy")


@dataclass(frozen=True)
class DistillConfig:
    mode: str = "lcm"
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 100
    # omega range (guidance_scale - 1) the student learns to follow. Not LCM's [5, 15]: tiny's teacher binds colour
    # worse at high guidance (joint 96.5 % at scale 7.5, 86 % at 16) and the student learnt that average; [2, 8]
    # (scales 3-9, around the usual 7.5) lifted the 4-step student from 83 % to 95 % of the teacher (README)
    w_min: float = 2.0
    w_max: float = 8.0
    ddim_steps: int = 50  # points of the teacher's skipping schedule (k = num_train_timesteps / ddim_steps)
    loss: str = "huber"
    loss_c: float | None = None  # huber: 0.001 (LCM's), cauchy: 0.05
    ema_decay: float = 0.95
    timestep_scaling: float = 10.0
    guidance_embedding_dim: int = 256
    lora_rank: int = 32
    teacher_samples: int = 1024
    teacher_steps: int = 25
    teacher_guidance: float = 7.5
    # 0: the teacher takes its guided step on fresh noise every training step (LCM's recipe); K > 0: those
    # steps are computed once for K noise draws per teacher latent and reused, with a fresh w each time (the
    # step is linear in w) - the loop then runs no teacher: 1.45-1.6x faster per step on tiny on 2 cores (README)
    teacher_draws: int = 0
    validate_every: int = 500
    # prompts of the validation images (1, 2, 4 steps); the ODE agreement runs 4 seeds of each through the
    # teacher's 25 guided DDIM steps. 0: no validation - on a CPU, an SD 1.5 teacher at 512 px needs about half
    # an hour for the default 16 latents
    validation_prompts: int = 4
    checkpoint_every: int = 250
    seed: int = 0

    def check(self) -> None:
        from ..errors import EdgeLDMError

        if self.mode not in MODES:
            raise EdgeLDMError(f"unknown distillation mode {self.mode!r}", hint=f"one of {', '.join(MODES)}")
        if self.loss not in LOSSES:
            raise EdgeLDMError(f"unknown loss {self.loss!r}", hint=f"one of {', '.join(LOSSES)}")
        if not 0 <= self.w_min <= self.w_max:
            raise EdgeLDMError(f"guidance range [{self.w_min}, {self.w_max}] is empty or negative",
                               hint="--w-min must be >= 0 and <= --w-max")
        if self.validation_prompts < 0:
            raise EdgeLDMError(f"--validation-prompts {self.validation_prompts} must be >= 0", hint="0: no validation")
        if self.teacher_draws < 0:
            raise EdgeLDMError(f"--teacher-draws {self.teacher_draws} must be >= 0", hint="0 runs the teacher live")
        if not 0 <= self.ema_decay < 1:
            raise EdgeLDMError(f"--ema-decay {self.ema_decay} must lie in [0, 1)")

    @property
    def teacher_equivalent_guidance(self) -> float:
        """Guidance scale 8 (diffusers' LCM default region) clipped into the trained range 1 + [w_min, w_max]."""
        return round(1.0 + min(max(7.0, self.w_min), self.w_max), 2)

    @property
    def default_guidance(self) -> float:
        """Guidance scale a bundle of the student samples with by default: ``teacher_equivalent_guidance`` for
        an embedded-guidance student; 1 (no second UNet call) for a LoRA student, which has no w input."""
        return self.teacher_equivalent_guidance if self.mode == "lcm" else 1.0

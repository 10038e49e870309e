"""The settings of ``edgeldm finetune``: torch-free, so the CLI and recipes read their defaults without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-4
    warmup: int = 50
    task_weight: float = 1.0
    out_kd_weight: float = 1.0
    feat_kd_weight: float = 1.0
    # > 0: every latent also goes through both UNets without its caption, and the student's classifier-free-
    # guided prediction at `guided_kd_scale` is matched to the teacher's - the quantity sampling uses, where the
    # guidance scale amplifies any error in the conditional-unconditional difference (2x the UNet work per step)
    guided_kd_weight: float = 0.0
    guided_kd_scale: float = 7.5
    teacher_samples: int = 1024  # calibration prompts the teacher draws latents for
    teacher_steps: int = 25
    guidance: float = 7.5
    scene_samples: int = 8000  # tiny's training scenes through the VAE (tiny-derived models only; 0: off)
    caption_dropout: float = 0.1
    checkpoint_every: int = 250
    seed: int = 0

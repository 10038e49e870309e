"""The settings of ``edgeldm distill-vae``: torch-free, so the CLI can show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VaeDistillConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 50
    # width of every block of the tiny encoder and decoder; None: the model VAE's first (widest-resolution) width,
    # capped at TAESD's 64 - SD's 128 becomes 64, tiny's 32 stays 32
    channels: int | None = None
    # blocks per level; None: TAESD's, 3 per level and 1 at full resolution (decoder lowest resolution first:
    # 3,3,3,1 for SD's four levels; encoder highest first: 1,3,3,3)
    decoder_blocks: tuple[int, ...] | None = None
    encoder_blocks: tuple[int, ...] | None = None
    teacher_samples: int = 512  # calibration prompts the model generates latents for
    teacher_steps: int = 25
    guidance: float = 7.5
    scene_samples: int = 4000  # tiny's training scenes (tiny-derived models only; 0: off)
    holdout: int = 64  # latents kept out of training, for the parity report
    l1_weight: float = 1.0  # decoder loss = MSE + l1_weight * L1 on the image
    encoder_weight: float = 1.0  # loss += encoder_weight * MSE(encoder(image), latent)
    checkpoint_every: int = 250
    seed: int = 0

    def check(self) -> None:
        from ..errors import EdgeLDMError

        for name in ("steps", "batch_size", "teacher_samples", "teacher_steps"):
            if getattr(self, name) <= 0:
                raise EdgeLDMError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.channels is not None and self.channels <= 0:
            raise EdgeLDMError(f"--channels must be positive, got {self.channels}")
        for name in ("decoder_blocks", "encoder_blocks"):
            blocks = getattr(self, name)
            if blocks is not None and (not blocks or any(b <= 0 for b in blocks)):
                raise EdgeLDMError(f"--{name.replace('_', '-')} {','.join(map(str, blocks))}: every level needs at "
                                   "least one block", hint="e.g. 3,3,3,1")
        if self.lr <= 0 or self.l1_weight < 0 or self.encoder_weight < 0 or self.scene_samples < 0 or self.holdout < 0:
            raise EdgeLDMError("lr must be positive; l1_weight, encoder_weight, scene_samples and holdout must not "
                               "be negative")

    def blocks(self, levels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(decoder, encoder) blocks per level for a VAE with ``levels`` levels."""
        return (self.decoder_blocks or (3,) * (levels - 1) + (1,), self.encoder_blocks or (1,) + (3,) * (levels - 1))

"""``edgeldm.distill_vae``: replace a model's VAE by a tiny one (TAESD's architecture) trained to reproduce it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..arguments import SEED
from ..compressor.vae_distill_config import VaeDistillConfig as _Defaults
from ..errors import EdgeLDMError
from ..options import option, resolve, to_config
from .common import StageResult, TEACHER_STEPS_HELP, check_output, existing, is_main_process, remove_work, weights_bytes


def block_counts(text: str) -> tuple[int, ...]:
    """``3,3,3,1`` -> ``(3, 3, 3, 1)``."""
    try:
        return tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise EdgeLDMError(f"{text!r}: expected comma-separated block counts", hint="e.g. 3,3,3,1") from None


@dataclass(frozen=True)
class DistillVaeOptions:
    steps: int = option(_Defaults.steps, "optimizer steps")
    batch_size: int = option(_Defaults.batch_size, "latents per step")
    lr: float = option(_Defaults.lr, "peak learning rate, cosine decay")
    channels: int | None = option(_Defaults.channels, "width of every block of the tiny encoder and decoder "
                                                      "(default: the VAE's first width, at most 64 as in TAESD)")
    decoder_blocks: tuple[int, ...] | None = option(
        _Defaults.decoder_blocks, "decoder blocks per level, lowest resolution first, one count per VAE level "
                                  "(default TAESD's: 3 per level, 1 at full resolution - 3,3,3,1 for SD)",
        parse=block_counts, metavar="N,N,...")
    encoder_blocks: tuple[int, ...] | None = option(
        _Defaults.encoder_blocks, "encoder blocks per level, highest resolution first (default TAESD's: 1,3,3,3 "
                                  "for SD)", parse=block_counts, metavar="N,N,...")
    teacher_samples: int = option(_Defaults.teacher_samples, "latents MODEL generates as training data")
    teacher_steps: int = option(_Defaults.teacher_steps, TEACHER_STEPS_HELP)
    scene_samples: int = option(_Defaults.scene_samples, "tiny's training scenes added for tiny-derived models; "
                                                         "0: none")
    prompts: str | None = option(None, "calibration prompts, one per line", metavar="FILE")
    min_psnr: float | None = option(None, "refuse a tiny decoder whose mean held-out image PSNR against the "
                                          "original decoder is lower (default: report only)", metavar="DB")
    seed: int = option(_Defaults.seed, "random seed", parse=SEED)

    def config(self) -> _Defaults:
        config = to_config(_Defaults, self)
        config.check()
        return config


def distill_vae(model: str | Path, output: str | Path, options: DistillVaeOptions | None = None, *,
                overwrite: bool = False, allow_pickle: bool = False, **kwargs) -> StageResult:
    """Train an AutoencoderTiny to reproduce ``model``'s VAE and write ``model`` with it to ``output``."""
    from ..compressor.vae_distill import distill_vae as train, save_tiny_vae
    from ..lineage import lineage_base
    from ..loading import load_pipeline

    options = resolve(DistillVaeOptions, options, kwargs)
    config = options.config()
    model, out = str(model), Path(output)
    check_output(out, overwrite, inputs=(model,))
    pipe = load_pipeline(model, allow_pickle=allow_pickle, families=("sd", "sdxl"))
    if type(pipe.vae).__name__ != "AutoencoderKL":
        raise EdgeLDMError(f"{model}'s VAE is a {type(pipe.vae).__name__}; distill-vae replaces an AutoencoderKL",
                           hint="distil the model it was made from")
    tiny, summary = train(pipe, lineage_base(model), config, work=Path(f"{out}.work"), prompts_file=options.prompts)
    if not is_main_process():
        return StageResult("distill-vae", None, {})
    parity = summary["parity"]
    if options.min_psnr is not None and parity.get("decoder_psnr_db_mean", float("inf")) < options.min_psnr:
        raise EdgeLDMError(f"the tiny decoder reaches {parity['decoder_psnr_db_mean']:.2f} dB against the original "
                           f"decoder on {parity['images']} held-out latents, below --min-psnr {options.min_psnr:g}; "
                           f"nothing written (the training data stay in {out}.work)",
                           hint=f"train longer (--steps) or wider (--channels) after deleting {out}.work (other "
                                "settings start over), or lower the floor")
    save_tiny_vae(pipe, tiny, out, source=model, base=lineage_base(model), summary=summary, overwrite=overwrite,
                  protect=existing(model))
    remove_work(out)
    return StageResult("distill-vae", out, vae_metrics(out), summary)


def vae_metrics(model) -> dict:
    from ..lineage import read_lineage

    parity = (read_lineage(Path(model)) or {}).get("distill_vae", {}).get("parity", {})
    return {"size_bytes": weights_bytes(model), "decoder_psnr": parity.get("decoder_psnr_db_mean", float("nan"))}

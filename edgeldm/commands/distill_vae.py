"""``edgeldm distill-vae``: replace the VAE by a tiny one (TAESD's architecture) trained to reproduce it."""

from __future__ import annotations

from . import command
from .common import RAW, add_stage_arguments, call_stage


@command("distill-vae")
def add_parser(sub) -> None:
    from ..stages.distill_vae import DistillVaeOptions

    p = sub.add_parser(
        "distill-vae", help="replace the VAE by a tiny one (TAESD's architecture) trained to reproduce it",
        description="Train diffusers' AutoencoderTiny (TAESD's architecture: 3x3 convolutions, ReLU, nearest "
                    "upsampling; no GroupNorm, no attention) to reproduce MODEL's VAE, and write MODEL with it in "
                    "place of its VAE. After pruning and few-step distillation the VAE decoder is the largest "
                    "single cost of an image (SD v1.5: 311 GMACs at 256 px, the tiny decoder 17.7). Data: latents "
                    "MODEL generates for calibration prompts (plus tiny's training scenes for tiny-derived models) "
                    "and what its VAE decodes them to; no image data set. A held-out set reports the decoder's "
                    "image PSNR against the original decoder's (--min-psnr refuses a worse one). Pruning plans and "
                    "a distilled model's sampling defaults carry over. Runs under HF accelerate, checkpoints into "
                    "OUTPUT.work/ and resumes from there.",
        epilog="examples:\n  edgeldm distill-vae tiny-lcm -o tiny-lcm-taesd\n"
               "  edgeldm distill-vae ./my-sd15 -o sd15-taesd --steps 20000 --prompts my-prompts.txt\n"
               "  edgeldm export tiny-lcm-taesd -o bundle && edgeldm run bundle --prompt \"a small red circle\" "
               "-o x.png",
        formatter_class=RAW,
    )
    add_stage_arguments(p, DistillVaeOptions, "model folder to create (MODEL with the tiny VAE)", func=run)


def run(args) -> int:
    from ..stages.distill_vae import DistillVaeOptions, distill_vae

    result = call_stage(distill_vae, DistillVaeOptions, args, "model", allow_pickle=args.allow_pickle)
    if result.output is None:  # a helper process of accelerate launch
        return 0
    summary, parity = result.details, result.details["parity"]
    print(f"distilled {args.model}'s VAE into AutoencoderTiny ({args.steps} steps, {summary['seconds']:.0f} s); "
          f"held-out images {parity.get('decoder_psnr_db_mean', float('nan')):.1f} dB (min "
          f"{parity.get('decoder_psnr_db_min', float('nan')):.1f}) vs the original decoder, latents "
          f"{parity.get('encoder_latent_psnr_db_mean', float('nan')):.1f} dB vs its encoder; wrote {args.output}")
    return 0

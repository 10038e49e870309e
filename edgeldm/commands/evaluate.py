"""``edgeldm eval``: prompt accuracy and Fréchet distance on held-out scene prompts."""

from __future__ import annotations

from . import command
from .common import RAW, add_model_argument, image_output, print_json


@command("eval")
def add_parser(sub) -> None:
    from ..options import add_arguments
    from ..stages.evaluate import EvaluateOptions

    p = sub.add_parser(
        "eval", help="prompt accuracy and Fréchet distance on held-out scene prompts (models derived from tiny)",
        description="Generate K held-out prompts of the synthetic scene dataset with MODEL and score them exactly: "
                    "the attribute classifier checks shape, colour, position and size of every image (accuracy per "
                    "attribute and joint), and the Fréchet distance between its features of generated and real "
                    "held-out scenes stands in for FID. Same arguments, same numbers. MODEL may also be an "
                    "exported bundle: it then runs through the torch-free runtime (--backend).",
        epilog="examples:\n  edgeldm eval tiny --prompts 200 --steps 25 --guidance 7.5 --json --sheet sheet.png\n"
               "  edgeldm eval bundles/tiny-lcm --backend openvino   # 4 steps: the bundle's defaults",
        formatter_class=RAW,
    )
    add_model_argument(p)
    add_arguments(p, EvaluateOptions)
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON document")
    p.add_argument("--sheet", default=None, help="also write a contact sheet PNG (prompts beside images)")
    p.add_argument("--vae-ceiling", action="store_true",
                   help="also score real held-out scenes passed through the model's VAE (encode, decode): a "
                        "reference for what the VAE can reproduce (models only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..options import from_namespace
    from ..stages.evaluate import EvaluateOptions, evaluate

    if args.sheet:
        image_output(args.sheet, True)  # writable, and a format its suffix names
    r = evaluate(args.model, from_namespace(EvaluateOptions, args), allow_pickle=args.allow_pickle,
                 vae_ceiling=args.vae_ceiling)
    result, m = r.extra["result"], r.details
    if args.sheet:
        from ..benchmarks.contact_sheet import contact_sheet

        contact_sheet(result.images, result.captions, args.sheet, correct=result.correct())
        m["sheet"] = str(args.sheet)
    if args.json:
        print_json(m)
        return 0
    acc = m["accuracy"]
    print(f"{m['model']}: {m['images']} {m['split']} prompts, {m['steps']} steps, guidance {m['guidance']}, "
          f"{m['scheduler']}, seed {m['seed']}")
    print("accuracy  " + "  ".join(f"{k} {100 * v:.1f} %" for k, v in acc.items()))
    print(f"Fréchet distance (classifier features) {m['fd']:.3f}   generation {m['generation_seconds']} s")
    if "vae_ceiling" in m:
        ceiling = m["vae_ceiling"]
        print(f"VAE round-trip ({ceiling['images']} real scenes, {ceiling['psnr_db']:.1f} dB)  "
              + "  ".join(f"{k} {100 * v:.1f} %" for k, v in ceiling["accuracy"].items()))
    return 0

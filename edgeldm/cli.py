"""The ``edgeldm`` command line.

argparse stays here: every subcommand parses its flags, then calls one library function with plain
keyword arguments. Errors from the library (:class:`~edgeldm.errors.EdgeLDMError`) are printed without a
traceback (``--verbose`` shows it) and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

from . import __version__
from .arguments import argparse_type, check_guidance, check_psnr_floor, check_seed, check_text, check_threads
from .errors import EdgeLDMError

logger = logging.getLogger("edgeldm")

# argparse types: a bad value fails while the arguments are parsed, with one line, before any work
GUIDANCE = argparse_type(check_guidance, "guidance")
SEED = argparse_type(check_seed, "seed")
TEXT = argparse_type(check_text, "prompt")
NEGATIVE_TEXT = argparse_type(check_text, "negative prompt")
THREADS = argparse_type(check_threads, "threads")
PSNR_FLOOR = argparse_type(check_psnr_floor, "min-psnr")
#: image formats -o writes (PIL writes them from an RGB image; others fail only after the work)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
GUIDANCE_HELP = "classifier-free guidance scale, a finite number >= 0; 0 and 1 both mean no guidance"

#: subcommand name -> function that adds its parser (one registry, filled by @subcommand)
SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def subcommand(name: str):
    def register(add_parser: Callable[[argparse._SubParsersAction], None]):
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} registered twice")
        SUBCOMMANDS[name] = add_parser
        return add_parser

    return register


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a diffusers pipeline folder (model_index.json + component folders) or a zoo name "
                             "(see `edgeldm zoo list`)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="accept pickled .bin/.ckpt weights (read with torch.load(weights_only=True)); "
                             "refused by default because unpickling can run code")


# --- info --------------------------------------------------------------------------------------


@subcommand("info")
def _add_info(sub) -> None:
    p = sub.add_parser(
        "info", help="components, parameters, UNet MACs and the operator inventory of a model",
        description="Describe a model without loading its weights: per component the class, parameter count, "
                    "dtype and size on disk; for the UNet the MACs of one denoising step at the given image size "
                    "(counted by torch's FlopCounterMode) and every operator pruning can work on.",
        epilog="examples:\n  edgeldm info sd15\n  edgeldm info ./my-sd-checkpoint --json --height 768 --width 768",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (default: the model's native size)")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (default: the model's native size)")
    p.add_argument("--operators", action="store_true", help="list every operator, not only the summary per type")
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from .info import describe_model, render_info

    _check_positive(height=args.height, width=args.width)
    info = describe_model(args.model, height=args.height, width=args.width, allow_pickle=args.allow_pickle)
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_info(info, list_operators=args.operators)
    return 0


# --- zoo ---------------------------------------------------------------------------------------


@subcommand("zoo")
def _add_zoo(sub) -> None:
    p = sub.add_parser("zoo", help="list the built-in models, or save one as a diffusers folder",
                       description="The zoo holds architecture presets (real SD architectures with seeded random "
                                   "weights, for latency and memory at real scale) and models shipped with edgeldm.")
    zoo_sub = p.add_subparsers(dest="zoo_command", metavar="{list,save}", required=True)
    ls = zoo_sub.add_parser("list", help="list zoo models")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_run_zoo_list)
    save = zoo_sub.add_parser("save", help="write a zoo model as a diffusers folder (safetensors)",
                              description="Materialise a zoo model as a standard diffusers folder that any "
                                          "diffusers-based tool (and edgeldm) loads with from_pretrained.")
    save.add_argument("name", help="zoo model name")
    save.add_argument("-o", "--output", required=True, help="output folder (must not exist unless --overwrite)")
    save.add_argument("--seed", type=SEED, default=0, help="seed of the random weights of a preset (default 0)")
    save.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    save.set_defaults(func=_run_zoo_save)


def _run_zoo_list(args) -> int:
    from .zoo import ZOO

    rows = [{"name": e.name, "kind": e.kind, "description": e.description} for e in ZOO.values()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgeldm zoo")
    for col in ("name", "kind", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["kind"], row["description"])
    Console().print(table)
    return 0


def _run_zoo_save(args) -> int:
    from .atomic import atomic_output_dir
    from .loading import load_pipeline
    from .saving import save_pipeline
    from .zoo import get_zoo_entry

    get_zoo_entry(args.name)  # clear error before any heavy import
    _refuse_existing(args.output, args.overwrite)
    with atomic_output_dir(args.output, overwrite=args.overwrite) as tmp:
        pipe = load_pipeline(args.name, seed=args.seed)
        logger.info("writing %s", args.output)
        save_pipeline(pipe, tmp)
    logger.info("saved %s to %s", args.name, args.output)
    return 0


# --- generate / eval ---------------------------------------------------------------------------


def _add_sampling_arguments(p: argparse.ArgumentParser, *, steps: int | None = 25,
                            guidance: float | None = 7.5) -> None:
    from .schedulers import SCHEDULERS

    own = "the model's own: 25 / 7.5, or 4 / 8 for an LCM"
    p.add_argument("--steps", type=int, default=steps,
                   help=f"denoising steps (default {steps if steps is not None else own})")
    own_guidance = "the model's own"
    p.add_argument("--guidance", type=GUIDANCE, default=guidance,
                   help=f"{GUIDANCE_HELP} (default {guidance if guidance is not None else own_guidance})")
    p.add_argument("--seed", type=SEED, default=0, help="random seed, 0 to 2^64 - 1 (default 0)")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                   help="sampler to use instead of the model's own (default: the model's scheduler)")


def _add_no_verify_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--no-verify", action="store_true",
                   help=f"{what}: skip the SHA-256 check of the bundle's files against its manifest (paths must "
                        "still stay inside the bundle)")


def _refuse_existing(path, overwrite: bool, *, folder: bool = True, inputs: tuple = ()) -> None:
    """Before any work: outputs are never replaced silently, a folder never by a file (nor the reverse), never
    put inside an input, and an output that cannot be written fails now, not after the work (atomic writers
    check again at the rename)."""
    from pathlib import Path

    from .atomic import check_output

    check_output(path, folder=folder, overwrite=overwrite,
                 protect=tuple(p for p in inputs if p is not None and Path(p).exists()))


def _image_output(path: str, overwrite: bool, *, inputs: tuple = ()):
    """The image file ``-o`` names, checked before the work: writable, not inside an input, and a format for
    its suffix."""
    from pathlib import Path

    out = Path(path)
    _refuse_existing(path, overwrite, folder=False, inputs=inputs)
    suffix = out.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise EdgeLDMError(f"cannot tell the image format of {out} from its suffix {suffix or '(none)'}",
                           hint=f"end the name with one of {', '.join(IMAGE_SUFFIXES)}")
    return out


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise EdgeLDMError(f"--{name.replace('_', '-')} must be positive, got {value}")


@subcommand("generate")
def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate one image from a prompt (torch reference path through diffusers)",
        description="Generate an image with the diffusers pipeline of MODEL: the torch reference that exported "
                    "and compressed models are compared against.",
        epilog='example:\n  edgeldm generate tiny --prompt "a large red circle in the top left on a white background" '
               "-o red.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("--prompt", required=True, type=TEXT, help="text prompt")
    p.add_argument("--negative-prompt", default=None, type=NEGATIVE_TEXT, help="negative prompt (used with guidance > 1)")
    _add_sampling_arguments(p)
    p.add_argument("--height", type=int, default=None, help="image height (default: the model's native size)")
    p.add_argument("--width", type=int, default=None, help="image width (default: the model's native size)")
    p.add_argument("-o", "--output", required=True, help="output image; the suffix picks the format (.png, .jpg, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run_generate)


def _run_generate(args) -> int:
    from pathlib import Path

    from .atomic import atomic_write_bytes, image_bytes
    from .generation import generate
    from .loading import load_pipeline
    from .schedulers import swap_scheduler

    _check_positive(steps=args.steps, height=args.height, width=args.width)
    out = _image_output(args.output, args.overwrite, inputs=(args.model,))
    pipe = load_pipeline(args.model, allow_pickle=args.allow_pickle)
    if args.scheduler:
        swap_scheduler(pipe, args.scheduler)
    images, _ = generate(pipe, [args.prompt], steps=args.steps, guidance=args.guidance, seeds=[args.seed],
                         height=args.height, width=args.width,
                         negative_prompts=[args.negative_prompt] if args.negative_prompt else None)
    atomic_write_bytes(out, image_bytes(images[0], out.suffix))
    logger.info("wrote %s (%dx%d, %d steps, guidance %g, seed %d, %s)", out, images.shape[2], images.shape[1],
                args.steps, args.guidance, args.seed, type(pipe.scheduler).__name__)
    return 0


@subcommand("eval")
def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="prompt accuracy and Fréchet distance on held-out scene prompts (models derived from tiny)",
        description="Generate K held-out prompts of the synthetic scene dataset with MODEL and score them exactly: "
                    "the attribute classifier checks shape, colour, position and size of every image (accuracy per "
                    "attribute and joint), and the Fréchet distance between its features of generated and real "
                    "held-out scenes stands in for FID. Same arguments, same numbers. MODEL may also be an "
                    "exported bundle: it then runs through the torch-free runtime (--backend).",
        epilog="examples:\n  edgeldm eval tiny --prompts 200 --steps 25 --guidance 7.5 --json --sheet sheet.png\n"
               "  edgeldm eval bundles/tiny-lcm --backend openvino   # 4 steps: the bundle's defaults",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("--prompts", type=int, default=200, help="number of held-out prompts (default 200)")
    _add_sampling_arguments(p, steps=None, guidance=None)
    p.add_argument("--split", choices=("heldout", "compositional"), default="heldout",
                   help="heldout: new scenes of trained combinations; compositional: (shape, colour) pairs never "
                        "seen in training (default heldout)")
    p.add_argument("--batch-size", type=int, default=25, help="images per pipeline call (default 25)")
    p.add_argument("--backend", default=None,
                   help="graphs a bundle runs: onnx, openvino, coreml (default: onnx if the bundle has it, else "
                        "the backend it has)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON document")
    p.add_argument("--sheet", default=None, help="also write a contact sheet PNG (prompts beside images)")
    _add_no_verify_argument(p, "a bundle MODEL")
    p.add_argument("--vae-ceiling", action="store_true",
                   help="also score real held-out scenes passed through the model's VAE (encode, decode): a "
                        "reference for what the VAE can reproduce (models only)")
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    if args.sheet:
        _refuse_existing(args.sheet, True, folder=False)
    result, pipe, config = evaluate_args(args)
    if args.sheet:
        from .benchmarks.contact_sheet import contact_sheet

        contact_sheet(result.images, result.captions, args.sheet, correct=result.correct())
        result.metrics["sheet"] = str(args.sheet)
    m = result.metrics
    if args.vae_ceiling:
        from .benchmarks.evaluate import vae_ceiling

        m["vae_ceiling"] = vae_ceiling(pipe, seed=config.seed, split=config.split)
    if args.json:
        json.dump(m, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
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


def evaluate_args(args):
    """``edgeldm eval``'s work for parsed arguments (also a `compress` stage): (result, pipeline or None, config)."""
    from pathlib import Path

    from .benchmarks.evaluate import EvalConfig, evaluate_bundle, evaluate_pipeline

    _check_positive(steps=args.steps, prompts=args.prompts, batch_size=args.batch_size)
    if args.prompts < 2:
        raise EdgeLDMError(f"--prompts must be at least 2 (the Fréchet distance needs two), got {args.prompts}")
    bundle = (Path(args.model) / "edgeldm.json").is_file()
    if bundle:
        if args.vae_ceiling:
            raise EdgeLDMError("--vae-ceiling needs a model (the bundle has no VAE encoder to round-trip)")
        from .manifest import default_backend, load_manifest

        manifest = load_manifest(Path(args.model))
        defaults, pipe = manifest["defaults"], None
        args.backend = args.backend or default_backend(manifest)
    else:
        from .exporters.bundle import default_sampling
        from .lineage import lineage_base
        from .loading import load_pipeline

        pipe = load_pipeline(args.model, allow_pickle=args.allow_pickle)
        defaults = default_sampling(pipe, lineage_base(args.model))
    config = EvalConfig(prompts=args.prompts, steps=args.steps or defaults["steps"],
                        guidance=defaults["guidance"] if args.guidance is None else args.guidance, seed=args.seed,
                        split=args.split, scheduler=args.scheduler, batch_size=args.batch_size)
    if bundle:
        result = evaluate_bundle(args.model, config, backend=args.backend,
                                 verify=not getattr(args, "no_verify", False))
    else:
        result = evaluate_pipeline(pipe, config, model_name=str(args.model))
    return result, pipe, config


# --- export ------------------------------------------------------------------------------------


@subcommand("export")
def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="export a model to a bundle of ONNX / OpenVINO graphs with a manifest",
        description="Export the text encoder, UNet and VAE decoder of MODEL into one bundle folder (optimum's "
                    "layout, so optimum's pipelines load it too) with edgeldm.json: file digests, I/O specs, "
                    "scheduler, defaults, and every graph's validation against torch (max abs diff, cosine, PSNR). "
                    "Graphs are validated on shapes other than the export shapes; a failure writes nothing.",
        epilog="examples:\n  edgeldm export tiny -o bundles/tiny\n"
               "  edgeldm export ./sd15 -o bundles/sd15-npu --backend onnx --static --height 512 --width 512",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("-o", "--output", required=True, help="bundle folder to create")
    p.add_argument("--backend", default="onnx,openvino",
                   help="comma-separated backends: onnx, openvino, coreml (needs --static); default onnx,openvino")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="graph precision; fp16 keeps the VAE in fp32 unless --fp16-vae (default fp32)")
    p.add_argument("--fp16-vae", action="store_true", help="also export the VAE in fp16 (risk: black images)")
    p.add_argument("--height", type=int, default=None, help="image height (default: the model's native size)")
    p.add_argument("--width", type=int, default=None, help="image width (default: the model's native size)")
    p.add_argument("--static", action="store_true", help="fixed shapes (batch 2 UNet for guidance; what NPUs need)")
    p.add_argument("--vae-encoder", action="store_true", help="also export the VAE encoder (image-to-image)")
    p.add_argument("--coreml-target", default="iOS16", metavar="TARGET",
                   help="Core ML minimum deployment target, e.g. iOS17, iOS18, macOS15 (default iOS16: the oldest "
                        "with ML programs); iOS18 / macOS15 let `quantize --scheme palettize*` use per-grouped-"
                        "channel tables (--group-size)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from .exporters.bundle import ExportConfig, export_bundle

    _check_positive(height=args.height, width=args.width)
    _refuse_existing(args.output, args.overwrite, inputs=(args.model,))
    config = ExportConfig(backends=tuple(b.strip() for b in args.backend.split(",") if b.strip()),
                          precision=args.precision, height=args.height, width=args.width, static=args.static,
                          vae_encoder=args.vae_encoder, fp16_vae_decoder=args.fp16_vae,
                          coreml_target=args.coreml_target)
    manifest = export_bundle(args.model, args.output, config, overwrite=args.overwrite,
                             allow_pickle=args.allow_pickle)
    for comp, entry in manifest["components"].items():
        for backend, b in entry["backends"].items():
            validation = b["validation"]
            if validation.get("skipped"):
                logger.info("  %-13s %-9s %s  validation skipped: %s", comp, backend, entry["precision"],
                            validation["skipped"])
                continue
            worst = min(o["psnr_db"] if isinstance(o["psnr_db"], (int, float)) else float("inf")
                        for o in validation["outputs"].values())
            logger.info("  %-13s %-9s %s  validation PSNR >= %.1f dB", comp, backend, entry["precision"], worst)
    logger.info("wrote bundle %s", args.output)
    return 0


# --- run ---------------------------------------------------------------------------------------


@subcommand("run")
def _add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="generate an image from a bundle with the torch-free runtime",
        description="Text-to-image over an exported bundle through ONNX Runtime or OpenVINO: numpy samplers, the "
                    "bundle's tokenizer, one backend; no torch, no diffusers. Verifies the bundle's file digests.",
        epilog='example:\n  edgeldm run bundles/tiny --prompt "a small red circle in the top left on a white '
               'background" --backend openvino -o x.png',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .runtimes.backends import BACKENDS
    from .runtimes.samplers import SAMPLERS
    from .runtimes.samplers.registry import _load_builtin_samplers

    _load_builtin_samplers()
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder written by `edgeldm export`")
    p.add_argument("--prompt", required=True, type=TEXT, help="text prompt")
    p.add_argument("--negative-prompt", default=None, type=NEGATIVE_TEXT, help="negative prompt (with guidance > 1)")
    p.add_argument("--backend", default="onnx", choices=sorted(BACKENDS),
                   help="onnx, openvino, coreml (predicts on macOS only), or torch (the source model through "
                        "diffusers' modules, for reference; needs the compress extra) (default onnx)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the bundle's)")
    p.add_argument("--guidance", type=GUIDANCE, default=None, help=f"{GUIDANCE_HELP} (default: the bundle's)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed, 0 to 2^64 - 1 (default 0)")
    p.add_argument("--height", type=int, default=None, help="image height (default: the bundle's)")
    p.add_argument("--width", type=int, default=None, help="image width (default: the bundle's)")
    p.add_argument("--sampler", default=None, choices=sorted(SAMPLERS),
                   help="the numpy sampler to use (default: the bundle's scheduler)")
    p.add_argument("--threads", type=THREADS, default=None, help="backend CPU threads (default: the backend's choice)")
    p.add_argument("--device", default=None,
                   help="where the backend runs: an ONNX Runtime execution provider (e.g. CUDAExecutionProvider), "
                        "an OpenVINO device (CPU, GPU, NPU, AUTO) or Core ML compute units (default: the CPU)")
    _add_no_verify_argument(p, "BUNDLE")
    p.add_argument("-o", "--output", required=True, help="output image; the suffix picks the format (.png, .jpg, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run_run)


def _run_run(args) -> int:
    from pathlib import Path

    from .atomic import atomic_write_bytes, image_bytes
    from .runtimes.text2image import Text2Image

    _check_positive(steps=args.steps, height=args.height, width=args.width, threads=args.threads)
    out = _image_output(args.output, args.overwrite, inputs=(args.bundle,))
    from .runtimes.backends import device_options

    options = {"threads": args.threads} if args.threads else {}
    options.update(device_options(args.backend, args.device))
    t2i = Text2Image(args.bundle, backend=args.backend, verify=not args.no_verify, sampler=args.sampler, **options)
    image = t2i(args.prompt, negative_prompt=args.negative_prompt, steps=args.steps, guidance=args.guidance,
                seed=args.seed, height=args.height, width=args.width)
    atomic_write_bytes(out, image_bytes(image, out.suffix))
    logger.info("wrote %s (%s, %s)", out, args.backend, type(t2i.sampler).__name__)
    return 0


# --- entry point -------------------------------------------------------------------------------


# --- prune -------------------------------------------------------------------------------------


@subcommand("prune")
def _add_prune(sub) -> None:
    from .compressor.score_config import VARIANTS, ScoreConfig

    d = ScoreConfig()
    p = sub.add_parser(
        "prune", help="LD-Pruner: score UNet operators by how much they move the generated latents, drop the cheapest",
        description="Task-agnostic structured pruning of the UNet (LD-Pruner). Every ResNet block, transformer "
                    "block, self-/cross-attention, feed-forward and the mid-block is modified in turn (removed, or "
                    "replaced by something cheaper); latents for N calibration prompts x fixed seeds are generated "
                    "with and without the change, and the operator is scored by how far the element-wise mean and "
                    "standard deviation of the latents move. The lowest scores per MAC saved go until the budget is "
                    "met. The output is a diffusers folder (safetensors) with a replayable plan "
                    "(unet/edgeldm_pruning.json) that load_pipeline, export and run accept like any model. "
                    "Finetune it afterwards: `edgeldm finetune`.",
        epilog="examples:\n  edgeldm prune tiny -o pruned --target-macs 0.65\n"
               "  edgeldm prune tiny --score-only --json > scores.json\n"
               "  edgeldm prune ./sd15 -o sd15-pruned --remove 6 --prompts my-prompts.txt --samples 64\n"
               "  accelerate launch --num_processes 2 -m edgeldm prune tiny -o pruned --cache scores/   "
               "# operators sharded",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("-o", "--output", default=None, help="pruned model folder to create (not needed with --score-only)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--target-macs", type=float, default=None,
                        help="fraction of the UNet's MACs to keep, e.g. 0.65 (default when no budget is given); "
                             "of the unpruned architecture, also when MODEL is pruned already (gradual pruning: "
                             "prune 0.7 -> finetune -> prune 0.65)")
    budget.add_argument("--target-params", type=float, default=None,
                        help="fraction of the UNet's parameters to keep (of the unpruned architecture too)")
    budget.add_argument("--remove", type=int, default=None, help="number of operators to remove")
    p.add_argument("--strategy", default="ldpruner", choices=("ldpruner", "random", "magnitude", "bk-sdm"),
                   help="ldpruner (the score), or an ablation baseline: random order, lowest weight magnitude, "
                        "BK-SDM's fixed removal (default ldpruner)")
    p.add_argument("--rank-by", choices=("budget", "latency"), default="budget",
                   help="ldpruner ranks candidates by score per unit saved: of the budget (MACs or parameters) or of "
                        "the UNet-step latency measured per candidate (needs --latency-repeat > 0; candidates "
                        "measured to save no time never go) (default budget)")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="calibration prompts, one per line (default: tiny's captions for tiny-derived models, else "
                        "the shipped general set)")
    p.add_argument("--samples", type=int, default=d.samples,
                   help=f"calibration prompts x seeds per latent set (default {d.samples})")
    p.add_argument("--steps", type=int, default=d.steps,
                   help=f"sampler steps per calibration latent (default {d.steps})")
    p.add_argument("--guidance", type=GUIDANCE, default=d.guidance,
                   help=f"guidance scale of the calibration runs, >= 0 (default {d.guidance})")
    p.add_argument("--variant", choices=VARIANTS, default=d.variant,
                   help="score: set statistics of the final latents (the paper), of every step's latents, or "
                        "'paired': the mean distance between the final latents of the same prompt and seed, "
                        "which sees prompt-conditional damage such as colour binding (default final)")
    p.add_argument("--latency-repeat", type=int, default=d.latency_repeat,
                   help=f"UNet-step timings per candidate for the latency-saved column; 0 skips (default "
                        f"{d.latency_repeat})")
    p.add_argument("--narrow-keep", type=float, default=None, metavar="F",
                   help="also consider narrowing ResNet blocks and feed-forwards to keep fraction F of their inner "
                        "channels (Torch-Pruning dependency groups), e.g. 0.5; off by default: on tiny it recovered "
                        "worse than whole-operator removal at the same MACs (README)")
    p.add_argument("--protect", action="append", default=[], metavar="GLOB",
                   help="never modify modules matching GLOB, nor an operator containing one (repeatable), e.g. "
                        "'*.attn2' keeps every cross-attention and so every transformer block whole")
    p.add_argument("--iterative", action="store_true", help="re-score the remaining operators after every "
                                                            "--rescore-every removals")
    p.add_argument("--rescore-every", type=int, default=4, help="removals between re-scorings (default 4)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the calibration latents / random strategy (default 0)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="score cache: an interrupted run resumes from it (default OUTPUT.work/scores; required "
                        "with accelerate launch)")
    p.add_argument("--device", default=None,
                   help="torch device that scores and prunes, e.g. cuda, cuda:1, cpu (default: the process's "
                        "accelerate device - a GPU when there is one, each process its own under accelerate launch)")
    p.add_argument("--score-only", action="store_true", help="score every candidate and report; prune nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_run_prune)


def _run_prune(args) -> int:
    from pathlib import Path

    from .compressor.prune import PruneConfig, prune_pipeline, save_pruned, score_model
    from .compressor.score_config import ScoreConfig
    from .compressor.selection import Budget
    from .lineage import lineage_base
    from .loading import load_pipeline

    _check_positive(samples=args.samples, steps=args.steps, rescore_every=args.rescore_every)
    if args.narrow_keep is not None and not 0.0 < args.narrow_keep < 1.0:
        raise EdgeLDMError(f"--narrow-keep must be in (0, 1), got {args.narrow_keep}")
    if not args.score_only and not args.output:
        raise EdgeLDMError("-o/--output is required (or pass --score-only)")
    if args.output:
        _refuse_existing(args.output, args.overwrite, inputs=(args.model,))
    try:
        budget = Budget(target_macs=args.target_macs, target_params=args.target_params, remove=args.remove)
        if budget == Budget() and args.strategy != "bk-sdm":
            budget = Budget(target_macs=0.65)
    except ValueError as exc:
        raise EdgeLDMError(str(exc)) from None
    config = PruneConfig(budget=budget, strategy=args.strategy, iterative=args.iterative,
                         rescore_every=args.rescore_every, prompts_file=args.prompts, seed=args.seed,
                         narrow_keep=args.narrow_keep, protect=tuple(args.protect), rank_by=args.rank_by,
                         score=ScoreConfig(samples=args.samples, steps=args.steps, guidance=args.guidance,
                                           variant=args.variant, seed=args.seed, latency_repeat=args.latency_repeat))
    cache = Path(args.cache) if args.cache else (Path(f"{args.output}.work") / "scores" if args.output else None)
    source = lineage_base(args.model)
    from accelerate import PartialState

    from .devices import torch_device

    device = torch_device(args.device, PartialState().device)
    pipe = load_pipeline(args.model, allow_pickle=args.allow_pickle).to(device)
    if args.score_only:
        config = PruneConfig(**{**config.__dict__, "strategy": "ldpruner"})
        cands = score_model(pipe, source, config, cache_dir=cache)
        if not PartialState().is_main_process:  # under accelerate launch the others only helped score
            return 0
        report = {"model": source, "score": config.score.__dict__,
                  "candidates": sorted((c.to_dict() for c in cands), key=lambda c: c["score"])}
        if args.json:
            json.dump(report, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"{'score':>9} {'MACs saved':>12} {'params saved':>12} {'latency saved':>14}  modification")
            for c in report["candidates"]:
                lat = "" if c["latency_saved_s"] is None else f"{c['latency_saved_s'] * 1000:.2f} ms"
                print(f"{c['score']:9.4f} {c['macs_saved']:12,d} {c['params_saved']:12,d} {lat:>14}  "
                      f"{c['modification']} {c['op']}")
        return 0
    plan, _ = prune_pipeline(pipe, source, config, cache_dir=cache)
    if not PartialState().is_main_process:  # the other processes only helped score
        return 0
    protect = (args.model,) if Path(args.model).exists() else ()
    save_pruned(pipe, plan, args.output, overwrite=args.overwrite, protect=protect)
    r = plan.report
    if args.json:
        json.dump(plan.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        inherited = len(plan.operations) - len(r["removed"])  # an already pruned input's operations come first
        for o in plan.operations[inherited:]:
            logger.info("  %-8s %s", o.modification, o.op)
        macs, params = r["macs"], r["params"]
        if "previous" in r:  # budgets count the unpruned architecture
            print(f"pruned {len(r['removed'])} operators after the input's {inherited}: "
                  f"UNet MACs {macs['kept_of_architecture']:.1%} of the unpruned architecture's ({macs['kept']:.1%} "
                  f"of the input's, {macs['pruned'] / 1e6:,.1f} M at {macs['height']} px), parameters "
                  f"{params['kept_of_architecture']:.1%}; wrote {args.output}")
        else:
            print(f"pruned {len(r['removed'])} operators: UNet MACs {macs['kept']:.1%} of the original "
                  f"({macs['pruned'] / 1e6:,.1f} of {macs['original'] / 1e6:,.1f} M at {macs['height']} px), "
                  f"parameters {params['kept']:.1%}; wrote {args.output}")
    return 0

# --- finetune ----------------------------------------------------------------------------------


def _add_data_cache_argument(p: argparse.ArgumentParser) -> None:
    from pathlib import Path

    p.add_argument("--data-cache", type=Path, default=None, metavar="DIR",
                   help="folder of teacher generations shared between training runs: finetune and distill taught "
                        "by the same teacher with the same prompts, seed, samples, steps and guidance (their "
                        "defaults) generate the teacher's latents once (default: none)")


@subcommand("finetune")
def _add_finetune(sub) -> None:
    p = sub.add_parser(
        "finetune", help="recover a pruned model by knowledge distillation from its unpruned teacher",
        description="BK-SDM-style recovery: the pruned UNet learns the denoising task, the teacher's output, and "
                    "the teacher's features at every down and up stage, on latents the teacher generates for "
                    "calibration prompts (plus tiny's training scenes when the model derives from tiny) - no image "
                    "data set needed. Runs under HF accelerate (`accelerate launch -m edgeldm finetune ...` for "
                    "several GPUs), checkpoints into OUTPUT.work/ and resumes from there.",
        epilog="examples:\n  edgeldm finetune pruned --teacher tiny -o finetuned --steps 1500\n"
               "  edgeldm finetune pruned --teacher tiny -o finetuned --steps 1000 --guided-kd-weight 1   "
               "# + guided-output KD",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pruned", metavar="PRUNED", help="a model written by `edgeldm prune` (or any diffusers folder)")
    p.add_argument("--teacher", required=True, help="the unpruned model (folder or zoo name)")
    p.add_argument("-o", "--output", required=True, help="finetuned model folder to create")
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    p.add_argument("--batch-size", type=int, default=64, help="latents per step (default 64)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate, cosine decay (default 2e-4)")
    p.add_argument("--task-weight", type=float, default=1.0, help="weight of the denoising loss (default 1)")
    p.add_argument("--out-kd-weight", type=float, default=1.0, help="weight of output KD (default 1)")
    p.add_argument("--feat-kd-weight", type=float, default=1.0, help="weight of stage-feature KD (default 1)")
    p.add_argument("--guided-kd-weight", type=float, default=0.0,
                   help="weight of guided-output KD: each latent also runs without its caption and the student's "
                        "classifier-free-guided prediction is matched to the teacher's (2x the UNet work per step; "
                        "default 0: off)")
    p.add_argument("--guided-kd-scale", type=GUIDANCE, default=7.5,
                   help="guidance scale of that guided prediction (default 7.5, the sampling default)")
    p.add_argument("--teacher-samples", type=int, default=1024, help="teacher-generated latents (default 1024)")
    p.add_argument("--scene-samples", type=int, default=8000,
                   help="tiny's training scenes added for tiny-derived models; 0: none (default 8000)")
    p.add_argument("--prompts", default=None, metavar="FILE", help="calibration prompts, one per line")
    _add_data_cache_argument(p)
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    p.add_argument("--allow-pickle", action="store_true", help="accept pickled weights in PRUNED / --teacher")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_run_finetune)


def _run_finetune(args) -> int:
    from pathlib import Path

    from .compressor.finetune import FinetuneConfig, finetune
    from .compressor.plan import read_plan
    from .compressor.prune import save_pruned
    from .lineage import lineage_base
    from .loading import load_pipeline

    _check_positive(steps=args.steps, batch_size=args.batch_size, teacher_samples=args.teacher_samples)
    if args.guided_kd_weight < 0:
        raise EdgeLDMError(f"--guided-kd-weight must be >= 0, got {args.guided_kd_weight}", hint="0 turns it off")
    out = Path(args.output)
    _refuse_existing(out, args.overwrite, inputs=(args.pruned, args.teacher))
    config = FinetuneConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, task_weight=args.task_weight,
                            out_kd_weight=args.out_kd_weight, feat_kd_weight=args.feat_kd_weight,
                            guided_kd_weight=args.guided_kd_weight, guided_kd_scale=args.guided_kd_scale,
                            teacher_samples=args.teacher_samples, scene_samples=args.scene_samples, seed=args.seed)
    student = load_pipeline(args.pruned, allow_pickle=args.allow_pickle)
    teacher = load_pipeline(args.teacher, allow_pickle=args.allow_pickle)
    summary = finetune(student, teacher, lineage_base(args.pruned), config, work=Path(f"{out}.work"),
                       prompts_file=args.prompts, data_cache=args.data_cache)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    plan = read_plan(Path(args.pruned) / "unet") if Path(args.pruned).is_dir() else None
    if plan is None:
        from .compressor.plan import PruningPlan

        plan = PruningPlan(base=lineage_base(args.pruned))
    plan.report = {**plan.report, "finetune": {**summary, "teacher": lineage_base(args.teacher)}}
    plan.base = lineage_base(args.pruned)
    protect = tuple(p for p in (args.pruned, args.teacher) if Path(p).exists())
    save_pruned(student, plan, out, overwrite=args.overwrite, protect=protect, stage="finetune")
    import shutil

    shutil.rmtree(f"{out}.work", ignore_errors=True)  # the resumable state is spent once the model is written
    last = summary["history"][-1] if summary["history"] else {}
    print(f"finetuned {args.pruned} for {config.steps} steps ({summary['seconds']:.0f} s, final loss "
          f"{last.get('loss', float('nan')):.4f}); wrote {out}")
    return 0

# --- distill -----------------------------------------------------------------------------------


@subcommand("distill")
def _add_distill(sub) -> None:
    from .compressor.distill_config import DistillConfig

    d = DistillConfig()
    p = sub.add_parser(
        "distill", help="latent consistency distillation: a 1-4-step student of any model (pruned ones too)",
        description="Distil MODEL (the teacher) into a latent consistency model (LCM). --mode lcm trains a copy of "
                    "the UNet plus a guidance-scale embedding, so the guidance scale is an input and sampling needs "
                    "one UNet call per step; --mode lcm-lora trains only a LoRA adapter (peft) and samples without "
                    "guidance. Training data are prompts: the teacher generates the latents (tiny's own captions "
                    "when MODEL derives from tiny, else the shipped prompt set or --prompts). The output is a "
                    "diffusers folder with an LCMScheduler that load_pipeline, `edgeldm export` and the runtimes' "
                    "LCM sampler take. Runs under HF accelerate (`accelerate launch -m edgeldm distill ...` for "
                    "several GPUs), checkpoints into OUTPUT.work/ and resumes from there; validation images of 1, "
                    "2 and 4 steps go to OUTPUT.work/validation/.",
        epilog="examples:\n  edgeldm distill tiny -o tiny-lcm\n"
               "  edgeldm distill pruned -o pruned-lcm --teacher tiny   # the unpruned model teaches\n"
               "  edgeldm distill finetuned -o lcm-lora --mode lcm-lora --steps 1000\n"
               "  edgeldm export tiny-lcm -o tiny-lcm-bundle && "
               "edgeldm run tiny-lcm-bundle --steps 4 --prompt \"a small red circle in the top left\" -o x.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("-o", "--output", required=True, help="distilled model folder to create")
    p.add_argument("--teacher", default=None, metavar="MODEL",
                   help="teach the student with another model than MODEL, e.g. the unpruned model a pruned MODEL "
                        "came from: the student starts from MODEL's UNet and learns the teacher's trajectories "
                        "(same text encoder and latents; default: MODEL teaches itself)")
    p.add_argument("--mode", choices=("lcm", "lcm-lora"), default=d.mode, help=f"(default {d.mode})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"latents per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate, cosine decay (default {d.lr:g})")
    p.add_argument("--w-min", type=float, default=d.w_min,
                   help=f"smallest guidance weight omega = guidance scale - 1 the student learns (default {d.w_min:g})")
    p.add_argument("--w-max", type=float, default=d.w_max, help=f"largest one (default {d.w_max:g})")
    p.add_argument("--ddim-steps", type=int, default=d.ddim_steps,
                   help=f"points of the teacher's skipping schedule; k = 1000 / N (default {d.ddim_steps})")
    p.add_argument("--loss", choices=("l2", "huber", "cauchy"), default=d.loss,
                   help=f"consistency loss; huber = pseudo-Huber (default {d.loss})")
    p.add_argument("--loss-c", type=float, default=None,
                   help="scale c of the huber / cauchy loss (default 0.001 / 0.05)")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay,
                   help=f"EMA rate of the target network, lcm mode (default {d.ema_decay})")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank, help=f"LoRA rank, lcm-lora mode (default {d.lora_rank})")
    p.add_argument("--teacher-samples", type=int, default=d.teacher_samples,
                   help=f"latents the teacher generates as training data (default {d.teacher_samples})")
    p.add_argument("--teacher-draws", type=int, default=d.teacher_draws, metavar="K",
                   help="precompute the teacher's guided steps for K noise draws per teacher latent and reuse them "
                        "(a fresh guidance weight each time), so training runs no teacher; 0: run it live on "
                        f"fresh noise every step, as LCM does (default {d.teacher_draws})")
    p.add_argument("--prompts", default=None, metavar="FILE", help="training prompts, one per line")
    _add_data_cache_argument(p)
    p.add_argument("--validate-every", type=int, default=d.validate_every,
                   help=f"validation images + ODE agreement every N steps; 0: only at the end (default "
                        f"{d.validate_every})")
    p.add_argument("--seed", type=SEED, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_run_distill)


def _same_model(a: str, b: str) -> bool:
    """Whether two MODEL arguments name the same model: one zoo name, or one folder by two spellings."""
    from pathlib import Path

    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def _run_distill(args) -> int:
    import shutil
    from pathlib import Path

    from .compressor.distill import DistillConfig, check_same_latent_space, distill, save_distilled
    from .compressor.plan import read_plan
    from .lineage import lineage_base
    from .loading import load_pipeline

    _check_positive(steps=args.steps, batch_size=args.batch_size, teacher_samples=args.teacher_samples,
                    ddim_steps=args.ddim_steps, lora_rank=args.lora_rank, lr=args.lr)
    out = Path(args.output)
    _refuse_existing(out, args.overwrite, inputs=(args.model, args.teacher))
    config = DistillConfig(mode=args.mode, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           w_min=args.w_min, w_max=args.w_max, ddim_steps=args.ddim_steps, loss=args.loss,
                           loss_c=args.loss_c, ema_decay=args.ema_decay, lora_rank=args.lora_rank,
                           teacher_samples=args.teacher_samples, teacher_draws=args.teacher_draws,
                           validate_every=args.validate_every or args.steps, seed=args.seed)
    config.check()
    model = load_pipeline(args.model, allow_pickle=args.allow_pickle)
    if args.teacher is not None and _same_model(args.teacher, args.model):
        args.teacher = None  # --teacher MODEL is the default: one load, and no second copy in memory
    teacher = model if args.teacher is None else load_pipeline(args.teacher, allow_pickle=args.allow_pickle)
    for name, pipe in ((args.model, model), (args.teacher, teacher)):
        if getattr(pipe.unet.config, "time_cond_proj_dim", None):
            raise EdgeLDMError(f"{name} already has a guidance embedding (it is an LCM)",
                               hint="distil its teacher instead")
    if teacher is not model:
        check_same_latent_space(model, teacher, args.model, args.teacher)
    base = lineage_base(args.model)
    # tiny's captions (the training data) follow the teacher's lineage: it generates the latents
    student, summary = distill(teacher, lineage_base(args.teacher or args.model), config,
                               work=Path(f"{out}.work"), prompts_file=args.prompts,
                               student_unet=None if teacher is model else model.unet,
                               teacher_name=None if teacher is model else lineage_base(args.teacher),
                               data_cache=args.data_cache)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    plan = read_plan(Path(args.model) / "unet") if Path(args.model).is_dir() else None
    protect = tuple(m for m in (args.model, args.teacher) if m and Path(m).exists())
    save_distilled(model, student, config, out, base=base, summary=summary, plan=plan, overwrite=args.overwrite,
                   protect=protect)
    validation = Path(f"{out}.work") / "validation"
    if validation.is_dir():  # the validation sheets are worth keeping; the rest of the state is spent
        shutil.copytree(validation, out / "validation", dirs_exist_ok=True)
    shutil.rmtree(f"{out}.work", ignore_errors=True)
    last = summary["validation"][-1] if summary["validation"] else {}
    print(f"distilled {args.model} ({config.mode}, {config.steps} steps, {summary['seconds']:.0f} s); "
          f"1-step latent PSNR vs the teacher's ODE {last.get('latent_psnr_1step_db', float('nan')):.1f} dB; "
          f"wrote {out}")
    return 0


@subcommand("distill-vae")
def _add_distill_vae(sub) -> None:
    from .compressor.vae_distill_config import VaeDistillConfig

    d = VaeDistillConfig()
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("-o", "--output", required=True, help="model folder to create (MODEL with the tiny VAE)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"latents per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate, cosine decay (default {d.lr:g})")
    p.add_argument("--channels", type=int, default=d.channels,
                   help="width of every block of the tiny encoder and decoder (default: the VAE's first width, at "
                        "most 64 as in TAESD)")
    p.add_argument("--decoder-blocks", default=None, metavar="N,N,...",
                   help="decoder blocks per level, lowest resolution first, one count per VAE level (default "
                        "TAESD's: 3 per level, 1 at full resolution - 3,3,3,1 for SD)")
    p.add_argument("--encoder-blocks", default=None, metavar="N,N,...",
                   help="encoder blocks per level, highest resolution first (default TAESD's: 1,3,3,3 for SD)")
    p.add_argument("--teacher-samples", type=int, default=d.teacher_samples,
                   help=f"latents MODEL generates as training data (default {d.teacher_samples})")
    p.add_argument("--scene-samples", type=int, default=d.scene_samples,
                   help=f"tiny's training scenes added for tiny-derived models; 0: none (default {d.scene_samples})")
    p.add_argument("--prompts", default=None, metavar="FILE", help="calibration prompts, one per line")
    p.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                   help="refuse a tiny decoder whose mean held-out image PSNR against the original decoder is lower "
                        "(default: report only)")
    p.add_argument("--seed", type=SEED, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_run_distill_vae)


def _block_counts(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise EdgeLDMError(f"{flag} {text!r}: expected comma-separated block counts", hint="e.g. 3,3,3,1") from None


def _run_distill_vae(args) -> int:
    import shutil
    from pathlib import Path

    from .compressor.vae_distill import distill_vae, save_tiny_vae
    from .compressor.vae_distill_config import VaeDistillConfig
    from .lineage import lineage_base
    from .loading import load_pipeline

    out = Path(args.output)
    _refuse_existing(out, args.overwrite, inputs=(args.model,))
    config = VaeDistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, channels=args.channels,
                              decoder_blocks=_block_counts(args.decoder_blocks, "--decoder-blocks"),
                              encoder_blocks=_block_counts(args.encoder_blocks, "--encoder-blocks"),
                              teacher_samples=args.teacher_samples, scene_samples=args.scene_samples, seed=args.seed)
    config.check()
    pipe = load_pipeline(args.model, allow_pickle=args.allow_pickle)
    if type(pipe.vae).__name__ != "AutoencoderKL":
        raise EdgeLDMError(f"{args.model}'s VAE is a {type(pipe.vae).__name__}; distill-vae replaces an AutoencoderKL",
                           hint="distil the model it was made from")
    tiny, summary = distill_vae(pipe, lineage_base(args.model), config, work=Path(f"{out}.work"),
                                prompts_file=args.prompts)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    parity = summary["parity"]
    if args.min_psnr is not None and parity.get("decoder_psnr_db_mean", float("inf")) < args.min_psnr:
        raise EdgeLDMError(f"the tiny decoder reaches {parity['decoder_psnr_db_mean']:.2f} dB against the original "
                           f"decoder on {parity['images']} held-out latents, below --min-psnr {args.min_psnr:g}; "
                           f"nothing written (the training data stay in {out}.work)",
                           hint=f"train longer (--steps) or wider (--channels) after deleting {out}.work (other "
                                "settings start over), or lower the floor")
    protect = (args.model,) if Path(args.model).exists() else ()
    save_tiny_vae(pipe, tiny, out, source=args.model, base=lineage_base(args.model), summary=summary,
                  overwrite=args.overwrite, protect=protect)
    shutil.rmtree(f"{out}.work", ignore_errors=True)
    print(f"distilled {args.model}'s VAE into AutoencoderTiny ({config.steps} steps, {summary['seconds']:.0f} s); "
          f"held-out images {parity.get('decoder_psnr_db_mean', float('nan')):.1f} dB (min "
          f"{parity.get('decoder_psnr_db_min', float('nan')):.1f}) vs the original decoder, latents "
          f"{parity.get('encoder_latent_psnr_db_mean', float('nan')):.1f} dB vs its encoder; wrote {out}")
    return 0

# --- quantize ----------------------------------------------------------------------------------


@subcommand("quantize")
def _add_quantize(sub) -> None:
    from .compressor.quantize import QuantizeConfig, list_schemes
    from .compressor.quantize.schemes import ACTIVATION_MIN_PSNR_DB, WEIGHT_ONLY_MIN_PSNR_DB

    d = QuantizeConfig(backend="onnx", scheme="dynamic")
    schemes = "\n".join(f"  {s.backend:9s}{s.name:14s}{s.summary}" for s in list_schemes())
    p = sub.add_parser(
        "quantize", help="quantize a bundle for one backend, calibrated on its own sampler trajectory",
        description="Quantize the graphs of an exported BUNDLE for one backend. Calibration inputs are captured "
                    "by running the bundle's own sampler (its default steps and guidance: the 4 LCM timesteps "
                    "for a distilled model) over calibration prompts; a quarter of them is held out to validate "
                    "each quantized graph against its fp32 graph (output PSNR, gated by --min-psnr) and the "
                    "images of both bundles are compared on fixed prompts. Every number goes into the new "
                    "bundle's manifest. The output holds only this backend's graphs.",
        epilog="schemes:\n" + schemes + "\n\nexamples:\n"
               "  edgeldm quantize bundles/tiny -o bundles/tiny-int8 --backend openvino --scheme hybrid\n"
               "  edgeldm quantize bundles/tiny -o bundles/tiny-qdq --backend onnx --scheme qdq-static "
               "--components unet\n"
               "  edgeldm quantize bundles/tiny -o bundles/tiny-small --backend onnx "
               "--scheme text_encoder=int4-weights,unet=int8-weights,vae_decoder=int8-weights",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="a bundle written by `edgeldm export`")
    p.add_argument("-o", "--output", required=True, help="quantized bundle folder to create")
    p.add_argument("--backend", required=True, choices=("onnx", "openvino", "coreml"))
    p.add_argument("--scheme", required=True,
                   help="see the list below; or one per component, e.g. "
                        "text_encoder=int4-weights,unet=int8-weights,vae_decoder=int8-weights")
    p.add_argument("--components", default=None,
                   help="comma-separated components to quantize (default: the scheme's)")
    p.add_argument("--calib-prompts", default=None, metavar="FILE", help="calibration prompts, one per line")
    p.add_argument("--calib-samples", type=int, default=d.calibration.samples,
                   help=f"images whose component inputs are captured (default {d.calibration.samples})")
    p.add_argument("--calib-steps", type=int, default=None,
                   help="sampler steps during capture (default: the bundle's, e.g. 4 for an LCM)")
    p.add_argument("--calib-dir", default=None, help="reuse a capture instead of making one")
    p.add_argument("--min-psnr", type=PSNR_FLOOR, default=None, metavar="DB",
                   help="floor on each quantized component's output PSNR vs its fp32 graph on held-out captured "
                        f"inputs; below it quantize exits 1 and writes nothing (default: {ACTIVATION_MIN_PSNR_DB:g} "
                        f"for schemes that quantize activations - within 2 accuracy points on tiny, README -, "
                        f"{WEIGHT_ONLY_MIN_PSNR_DB:g} for weight-only ones)")
    p.add_argument("--sensitivity", action=argparse.BooleanOptionalAction, default=None,
                   help="below the floor, keep the most sensitive blocks (UNet, text-encoder layers, VAE-decoder "
                        "blocks) in float until it is met (default: on for schemes that quantize activations)")
    p.add_argument("--keep-failed", action="store_true",
                   help="below the floor, still write the bundle (its manifest marks the failure) and exit 1")
    _add_no_verify_argument(p, "BUNDLE")
    p.add_argument("--group-size", type=int, default=d.options.group_size,
                   help=f"INT4 / palettization group size (default {d.options.group_size})")
    p.add_argument("--smooth-quant-alpha", type=float, default=d.options.smooth_quant_alpha,
                   help=f"SmoothQuant alpha of openvino w8a8; negative disables (default {d.options.smooth_quant_alpha})")
    p.add_argument("--calibrate-method", choices=("minmax", "percentile", "entropy"),
                   default=d.options.calibrate_method, help="onnx qdq-static range estimation (default minmax)")
    p.add_argument("--op-types", default=None, help="onnx: comma-separated op types to quantize")
    p.add_argument("--per-tensor", action="store_true", help="onnx: per-tensor instead of per-channel weights")
    p.add_argument("--image-prompts", type=int, default=d.image_prompts,
                   help=f"prompts for the image comparison with the fp32 bundle; 0: skip (default {d.image_prompts})")
    p.add_argument("--compact", action="store_true",
                   help="onnx: slim the quantized graphs for shipping - shape arithmetic folded (onnxslim), "
                        "short internal names, no shape annotations; same outputs (checked), 0.2-0.4 MB less "
                        "on tiny; graph input/output names stay")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_run_quantize)


def _split_list(text: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None


def _run_quantize(args) -> int:
    from .calibration.capture import CaptureConfig
    from .compressor.quantize import QuantizeConfig, QuantOptions, quantize_bundle

    _check_positive(calib_samples=args.calib_samples, calib_steps=args.calib_steps, group_size=args.group_size)
    _refuse_existing(args.output, args.overwrite, inputs=(args.bundle,))
    if args.image_prompts < 0:
        raise EdgeLDMError(f"--image-prompts must be >= 0 (0 skips the image comparison), got {args.image_prompts}")
    options = QuantOptions(group_size=args.group_size, smooth_quant_alpha=args.smooth_quant_alpha,
                           calibrate_method=args.calibrate_method, per_channel=not args.per_tensor,
                           op_types=_split_list(args.op_types))
    config = QuantizeConfig(backend=args.backend, scheme=args.scheme, components=_split_list(args.components),
                            options=options, calibration=CaptureConfig(samples=args.calib_samples,
                                                                       steps=args.calib_steps,
                                                                       prompts_file=args.calib_prompts),
                            calibration_dir=args.calib_dir, min_psnr=args.min_psnr, sensitivity=args.sensitivity,
                            keep_failed=getattr(args, "keep_failed", False), image_prompts=args.image_prompts,
                            compact=args.compact)
    manifest = quantize_bundle(args.bundle, args.output, config, overwrite=args.overwrite,
                               verify=not getattr(args, "no_verify", False))
    q = manifest["quantization"]
    for comp in q["components"]:
        entry = manifest["components"][comp]["backends"][args.backend]["quantization"]
        parity = entry["parity"]
        kept = f", kept float: {', '.join(entry['exclude'])}" if entry["exclude"] else ""
        value = f"{parity['psnr_db']:.1f} dB" if "psnr_db" in parity else parity.get("skipped", "n/a")
        floor = f" (floor {entry['min_psnr_db']:g} dB)" if "min_psnr_db" in entry else ""
        print(f"{comp:13s} {args.backend} {entry['scheme']}: output PSNR vs fp32 {value}{floor}{kept}")
    image = q["image_parity"]
    if "psnr_db_mean" in image:
        print(f"images vs the fp32 bundle: PSNR mean {image['psnr_db_mean']:.1f} dB, min {image['psnr_db_min']:.1f} dB")
    print(f"wrote {args.output}")
    return 0

# --- compress / demo ---------------------------------------------------------------------------


def _recipes_epilog() -> str:
    from .recipe import shipped_recipes

    lines = []
    for name, path in shipped_recipes().items():
        first = next((ln[len("description:"):].strip() for ln in path.read_text().splitlines()
                      if ln.startswith("description:")), "")
        lines.append(f"  {name:22s}{first}")
    return "shipped recipes:\n" + "\n".join(lines)


@subcommand("compress")
def _add_compress(sub) -> None:
    p = sub.add_parser(
        "compress", help="run a recipe: prune, finetune, distill, export, quantize, evaluate, bench - with gates",
        description="Run the stages of a recipe (a YAML file, or a shipped recipe's name) on MODEL, each into its own "
                    "folder of OUTPUT with its artifact, record (stage.json: options, content digests, metrics, "
                    "gates) and log. A stage's options are its subcommand's flags; a gate such as "
                    "'joint_accuracy >= 0.9 * baseline' stops the run when it fails and keeps everything made so "
                    "far. --resume skips stages whose inputs and options are unchanged (content hashes) and "
                    "continues an interrupted one from its checkpoints. The end: OUTPUT/bundle (the final bundle, "
                    "the recipe stamped into its manifest) and OUTPUT/report (Markdown, HTML, a latency-vs-quality "
                    "plot and a contact sheet).",
        epilog=_recipes_epilog() + "\n\nexamples:\n  edgeldm compress tiny --recipe tiny-demo -o runs/demo\n"
               "  edgeldm compress ./my-sd15 --recipe sd15-laptop-openvino -o runs/laptop --resume\n"
               "  edgeldm compress sd15 --recipe sd15-jetson-onnx -o runs/jetson --set bench.repeat=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_argument(p)
    p.add_argument("--recipe", required=True, help="a recipe file (YAML) or a shipped recipe's name")
    p.add_argument("-o", "--output", required=True, help="run folder to create")
    p.add_argument("--resume", action="store_true", help="continue a run in OUTPUT, reusing finished stages")
    p.add_argument("--overwrite", action="store_true", help="delete OUTPUT and start again")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override a recipe option: every stage of that kind (finetune.steps=100) or the N-th "
                        "stage (3.steps=100); repeatable")
    p.add_argument("--check", action="store_true", help="validate the recipe and print its stages, run nothing")
    p.set_defaults(func=_run_compress)


def _run_compress(args, *, title: str | None = None) -> int:
    from .recipe import load_recipe

    if args.resume and args.overwrite:
        raise EdgeLDMError("--resume and --overwrite exclude each other")
    recipe = load_recipe(args.recipe, tuple(args.set))
    if args.check:
        print(f"recipe {recipe.name} ({recipe.source}): {recipe.description}")
        for i, stage in enumerate(recipe.stages, 1):
            gates = "".join(f"   [gate: {g.text}]" for g in stage.gates)
            print(f"  {i}. {stage.kind:9s} {' '.join(stage.argv())}{gates}")
        return 0
    from .compress import GateFailed, compress

    try:
        summary = compress(args.model, recipe, args.output, resume=args.resume, overwrite=args.overwrite,
                           allow_pickle=args.allow_pickle)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM
        print(f"interrupted; `edgeldm compress {args.model} --recipe {args.recipe} -o {args.output} --resume` "
              "continues where it stopped", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except GateFailed:
        print(f"report of the stages so far: {args.output}/report/report.md", file=sys.stderr)
        raise
    _print_summary(summary, title)
    return 0


def _print_summary(summary: dict, title: str | None) -> None:
    from .benchmarks.compress_report import headline, markdown_table

    print()
    print(title or f"edgeldm compress {summary['model']} --recipe {summary['recipe']}")
    print(markdown_table(summary))
    head = headline(summary)
    facts = []
    if "speedup_per_image" in head:
        facts.append(f"{head['speedup_per_image']:.1f}x faster per image")
    if "size_ratio" in head:
        facts.append(f"{head['size_ratio']:.3f}x the size")
    if "accuracy_ratio" in head:
        facts.append(f"{100 * head['accuracy_ratio']:.0f} % of the original's joint accuracy")
    if facts:
        print("final bundle vs original: " + ", ".join(facts))
    print(f"bundle: {summary['final_bundle']}   report: {summary['output']}/report/report.html"
          + (f"   wall time {summary['seconds']:.0f} s" if summary.get("seconds") is not None else ""))


@subcommand("demo")
def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="compress the embedded tiny model end to end (recipe tiny-demo) and print the summary",
        description="Runs `edgeldm compress tiny --recipe tiny-demo` into a fresh folder: prune -> finetune -> "
                    "distill -> export -> quantize -> evaluate -> bench, about 14 minutes on 2 AVX-512 CPU cores "
                    "(28 measured with AVX2 only), and prints the table of the "
                    "report (size, MACs, latency, prompt accuracy per stage).",
        epilog="example:\n  edgeldm demo -o demo && open demo/report/report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", default="edgeldm-demo", help="run folder (default edgeldm-demo)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo")
    p.add_argument("--overwrite", action="store_true", help="delete OUTPUT and start again")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override a tiny-demo option (see `edgeldm compress --help`)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    ns = argparse.Namespace(model="tiny", recipe="tiny-demo", output=args.output, resume=args.resume,
                            overwrite=args.overwrite, set=args.set, allow_pickle=False, check=False)
    return _run_compress(ns, title="edgeldm demo: tiny, compressed by recipe tiny-demo")


# --- bench -------------------------------------------------------------------------------------

_BENCH_EPILOG = """targets:
  BUNDLE                 our torch-free runtime on an exported bundle (--backend picks the graphs)
  onnx:BUNDLE, openvino:BUNDLE, coreml:BUNDLE
                         the runtime with that backend (two backends side by side)
  MODEL, diffusers:MODEL the torch pipeline through diffusers (a folder or a zoo name)
  optimum-ort:BUNDLE     optimum's ORTDiffusionPipeline on the bundle
  optimum-ov:BUNDLE      optimum-intel's OVDiffusionPipeline on the bundle

examples:
  edgeldm bench bundles/tiny --vs diffusers:tiny --repeat 10 --markdown
  edgeldm bench sd15 --steps 1 --height 256 --width 256 --repeat 3
  edgeldm bench onnx:bundles/sd15 --vs openvino:bundles/sd15 --steps 1 --height 256 --width 256
  edgeldm bench bundles/tiny --history bench-history --gate 10%    # CI: compare with the history, then append
  edgeldm bench bundles/tiny --json result.json && edgeldm bench compare result.json bench-history
  edgeldm bench report bench-history -o report/"""


@subcommand("bench")
def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="latency per component, memory, size and quality of a model or bundle (also: bench compare, "
                      "bench report)",
        description="Time TARGET in a fresh process: cold load, text encoder, time per UNet step, VAE decode, "
                    "end-to-end time per image (median / p90 / min / max over --repeat runs after --warmup), peak "
                    "resident memory as the OS counts it, size on disk, and - for models derived from tiny - the "
                    "quality metrics of `edgeldm eval`. With --vs both targets run alternately (A B A B ...) and "
                    "every figure is reported as a ratio per pair. One JSON document per run (schema "
                    "edgeldm.bench/1, docs/bench-schema.md). `edgeldm bench compare` is the regression gate, "
                    "`edgeldm bench report` draws a history.",
        epilog=_BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="what to time (see targets below)")
    p.add_argument("--vs", default=None, metavar="OTHER", help="a second target, timed alternately with TARGET")
    p.add_argument("--backend", default="onnx", help="graphs a bundle target runs: onnx, openvino, coreml or torch "
                                                     "(default onnx)")
    p.add_argument("--device", default=None,
                   help="backend device: an ONNX Runtime execution provider, an OpenVINO device (CPU, GPU, NPU, "
                        "AUTO), Core ML compute units, or a torch device (default: the CPU)")
    p.add_argument("--steps", type=int, default=None,
                   help="denoising steps per image (default: the target's own - a bundle's manifest, 4 for an LCM, "
                        "else 25; 1 gives a UNet-step figure without a full image's cost)")
    p.add_argument("--guidance", type=GUIDANCE, default=None,
                   help="guidance scale, >= 0 (default: the target's own - a bundle's manifest, 8 for an LCM, "
                        "else 7.5)")
    p.add_argument("--vs-steps", type=int, default=None,
                   help="steps per image for the --vs target (default: --steps if given, else the --vs target's "
                        "own), e.g. 25 for a teacher vs a 4-step student")
    p.add_argument("--vs-guidance", type=GUIDANCE, default=None, help="guidance scale of the --vs target "
                                                                    "(default: --guidance if given, else its own)")
    p.add_argument("--height", type=int, default=None, help="image height (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="image width (default: the model's)")
    p.add_argument("--repeat", type=int, default=5, help="timed images per target (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed images first (default 1)")
    p.add_argument("--threads", type=THREADS, default=None, help="CPU threads per target (default: the backend's)")
    p.add_argument("--quality-prompts", type=int, default=None,
                   help="held-out prompts for the quality metrics (default 50 when the target derives from tiny, "
                        "else none; 0 turns them off)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the result document to OUT ('-': stdout)")
    p.add_argument("--history", default=None, metavar="DIR",
                   help="append the result (and a contact sheet) to DIR/<device fingerprint>/")
    p.add_argument("--gate", default=None, metavar="PCT",
                   help="with --history: before appending, compare the result with DIR's latest passing result of "
                        "this device and target (as `bench compare`) and exit 1 when a figure regressed more than "
                        "PCT, e.g. 10%%; the first run on a device becomes the baseline")
    _add_no_verify_argument(p, "bundle targets")
    p.add_argument("--sheet", default=None, metavar="PNG", help="write a contact sheet of the sample images")
    p.add_argument("--markdown", action="store_true", help="print a Markdown summary (for CI logs)")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    from .atomic import atomic_write_text, check_appendable_folder
    from .benchmarks.bench import append_history, gate, markdown_summary, parse_regression, write_sheet

    if args.quality_prompts is not None and (args.quality_prompts < 0 or args.quality_prompts == 1):
        raise EdgeLDMError(f"--quality-prompts must be 0 (off) or at least 2, got {args.quality_prompts}")
    max_regression = None
    if args.gate is not None:
        if not args.history:
            raise EdgeLDMError("--gate compares with a history: give --history DIR too")
        max_regression = parse_regression(args.gate)
    # every output is checked before the measurement: a bad path must not cost the run its results
    if args.json and args.json != "-":
        _refuse_existing(args.json, True, folder=False)
    if args.sheet:
        _refuse_existing(args.sheet, True, folder=False)
    if args.history:
        check_appendable_folder(args.history)
    result, samples = bench_args(args)
    regressed = []
    if max_regression is not None:
        verdict = gate(result, args.history, max_regression)
        if verdict is None:
            logger.info("gate: no earlier result of this device and target in %s; this run is the baseline",
                        args.history)
        else:
            result["gate"] = verdict
            _print_compare_rows(verdict["rows"], sys.stderr if args.json == "-" else sys.stdout)
            regressed = [r for r in verdict["rows"] if r["regressed"]]
    if args.history:
        logger.info("appended %s", append_history(result, args.history, samples))
    if args.sheet:
        write_sheet(samples, args.sheet)
    document = json.dumps(result, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(document)
    elif args.json:
        atomic_write_text(args.json, document)
    if args.markdown or args.json != "-":  # with the document on stdout, the summary goes to stderr
        print(markdown_summary(result), file=sys.stderr if args.json == "-" else sys.stdout)
    if regressed:
        _print_regression(regressed, max_regression)
        return 1
    return 0


def _print_compare_rows(rows: list[dict], file=None) -> None:
    for r in rows:
        print(f"{r['figure']:16s} new {r['new']:.6g}  baseline {r['baseline']:.6g}  ratio {r['ratio']:.3f}  "
              f"{'REGRESSED' if r['regressed'] else 'ok'}", file=file or sys.stdout)


def _print_regression(regressed: list[dict], max_regression: float) -> None:
    print("error: regression beyond " + f"{max_regression:.0%}: " + ", ".join(
        f"{r['figure']} x{r['ratio']:.2f}" for r in regressed), file=sys.stderr)


def _first(*values):
    return next(v for v in values if v is not None)


def _target_sampling(spec: str) -> dict:
    """Default steps / guidance of a bench target ``[kind:]location``, read without loading it."""
    from .benchmarks.targets import parse_spec
    from .lineage import default_sampling_of

    return default_sampling_of(parse_spec(spec)[2])


def bench_args(args):
    """``edgeldm bench``'s measurement for parsed arguments (also a `compress` stage): (document, samples)."""
    from .benchmarks.bench import run_bench
    from .benchmarks.targets import BenchConfig

    _check_positive(steps=args.steps, repeat=args.repeat, height=args.height, width=args.width,
                    threads=args.threads, vs_steps=args.vs_steps)
    own = _target_sampling(args.target)
    config = BenchConfig(steps=args.steps or own["steps"], guidance=_first(args.guidance, own["guidance"]),
                         height=args.height, width=args.width, repeat=args.repeat, warmup=args.warmup,
                         threads=args.threads, backend=args.backend, device=args.device,
                         quality_prompts=args.quality_prompts, verify=not getattr(args, "no_verify", False))
    from dataclasses import replace

    # an option given applies to both sides; otherwise each target samples as it was made to (an LCM
    # bundle at its 4 steps against its teacher's 25), which is the comparison a user means
    vs_own = _target_sampling(args.vs) if args.vs else own
    vs_config = replace(config, steps=args.vs_steps or args.steps or vs_own["steps"],
                        guidance=_first(args.vs_guidance, args.guidance, vs_own["guidance"]))
    return run_bench(args.target, config, vs=args.vs, vs_config=vs_config,
                     command=" ".join(["edgeldm"] + sys.argv[1:]))


@subcommand("bench-compare")
def _add_bench_compare(sub) -> None:
    p = sub.add_parser(
        "bench-compare", prog="edgeldm bench compare",
        help="the regression gate: fail when a latency or memory figure got worse than allowed (also: bench compare)",
        description="Compare a new bench result with a baseline: every latency figure (medians) and the peak "
                    "memory. Exits 1, naming the figures, when any is worse than --max-regression allows. BASELINE "
                    "is a result file or a --history folder (then the latest result of the same device and target "
                    "that passed its gate is the baseline). Compare before appending NEW to that history: a result "
                    "compared with itself always passes, so that is refused. `edgeldm bench --history DIR --gate "
                    "10%` does both, in that order, in one command.",
        epilog="example:\n  edgeldm bench bundles/tiny --json result.json\n"
               "  edgeldm bench compare result.json bench-history --max-regression 10% --markdown",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("new", metavar="NEW", help="the new result (JSON written by `edgeldm bench --json`)")
    p.add_argument("baseline", metavar="BASELINE", help="a baseline result file or a history folder")
    p.add_argument("--max-regression", default="10%", help="allowed slow-down per figure, e.g. 10%% or 0.1 "
                                                           "(default 10%%)")
    p.add_argument("--figures", default=None,
                   help="comma-separated figures to gate (default: image_s, unet_step_s, text_encoder_s, "
                        "vae_decode_s, cold_load_s, peak_rss_bytes)")
    p.add_argument("--markdown", action="store_true", help="print the comparison as Markdown")
    p.set_defaults(func=_run_bench_compare)


def _run_bench_compare(args) -> int:
    from .benchmarks.bench import GATED_FIGURES, compare, load_results, markdown_compare, parse_regression, \
        pick_baseline

    max_regression = parse_regression(args.max_regression)
    figures = tuple(f.strip() for f in args.figures.split(",")) if args.figures else GATED_FIGURES
    unknown = [f for f in figures if f not in GATED_FIGURES + ("size_bytes",)]
    if unknown:
        raise EdgeLDMError(f"unknown figure(s) {', '.join(unknown)}",
                           hint=f"choose from {', '.join(GATED_FIGURES + ('size_bytes',))}")
    _, new = load_results(args.new)[-1]
    baseline = pick_baseline(new, args.baseline)
    rows = compare(new, baseline, max_regression, figures)
    if args.markdown:
        print(markdown_compare(rows, max_regression, new, baseline))
    else:
        _print_compare_rows(rows)
    regressed = [r for r in rows if r["regressed"]]
    if regressed:
        _print_regression(regressed, max_regression)
        return 1
    return 0


@subcommand("bench-report")
def _add_bench_report(sub) -> None:
    p = sub.add_parser(
        "bench-report", prog="edgeldm bench report",
        help="a static HTML report with charts from a bench history (also: bench report)",
        description="Draw a bench history: per-component latency bars per device, latency vs quality with the "
                    "Pareto front across variants, and the runs' contact sheets; PNG charts (matplotlib) and one "
                    "index.html that shows them.",
        epilog="example:\n  edgeldm bench report bench-history -o report/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("history", metavar="HISTORY_DIR", help="a folder written by `edgeldm bench --history`")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.set_defaults(func=_run_bench_report)


def _run_bench_report(args) -> int:
    from .benchmarks.report import write_report

    _refuse_existing(args.output, args.overwrite, inputs=(args.history,))
    logger.info("wrote %s", write_report(args.history, args.output, overwrite=args.overwrite))
    return 0


def _merge_bench_subcommands(argv: list[str]) -> list[str]:
    """``bench compare`` / ``bench report`` -> the ``bench-compare`` / ``bench-report`` parsers."""
    for i, token in enumerate(argv):
        if not token.startswith("-"):
            if token == "bench" and i + 1 < len(argv) and argv[i + 1] in ("compare", "report"):
                return argv[:i] + [f"bench-{argv[i + 1]}"] + argv[i + 2:]
            break
    return argv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeldm",
        description="Shrink Stable-Diffusion-family models for edge devices: LD-Pruner structured pruning, "
                    "quantization and latent consistency distillation, exported to ONNX / OpenVINO / Core ML.",
        epilog="Run `edgeldm COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"edgeldm {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging; show tracebacks on errors")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in SUBCOMMANDS.values():
        add_parser(sub)
    return parser


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be swapped after configuration)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    if quiet:
        import os

        # diffusers / transformers read these when first imported (all of them are imported lazily)
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI runners, ``timeout`` and service managers send), raised like Ctrl-C so that the same
    cleanup runs: temporary outputs removed, worker processes stopped."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _install_sigterm() -> object:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # main() called from a thread (tests)
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _silence_stdout() -> None:
    """After a broken pipe (``edgeldm info --json | head``): nothing more can reach the reader, and Python's
    final flush must not raise again at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_merge_bench_subcommands(list(sys.argv[1:] if argv is None else argv)))
    _configure_logging(args.verbose, args.quiet)
    previous = _install_sigterm()
    try:
        return _run(args)
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM while an error was being reported
        print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    try:
        return int(args.func(args) or 0)
    except EdgeLDMError as exc:
        if args.verbose:
            logger.exception("edgeldm failed")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("terminated; nothing half-written was left behind", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a reader that went away
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        from .atomic import describe_os_error, is_disk_full

        if args.verbose:
            logger.exception("edgeldm failed")
        if is_disk_full(exc):
            print("error: the disk filled up; nothing was written\n  hint: free some space or choose another "
                  "output location", file=sys.stderr)
        elif isinstance(exc, OSError):
            print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        else:
            print(f"error: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        if not args.verbose:
            print("  run with --verbose for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

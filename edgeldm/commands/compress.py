"""``edgeldm compress`` (a recipe's stages, with gates) and ``edgeldm demo`` (the tiny-demo recipe on tiny)."""

from __future__ import annotations

import sys

from ..errors import Terminated
from . import command
from .common import RAW, add_model_argument

SET_HELP = ("override a recipe option: every stage of that kind (finetune.steps=100) or the N-th stage "
            "(3.steps=100); repeatable")


def _recipes_epilog() -> str:
    from ..stages.recipe import shipped_recipes

    lines = []
    for name, path in shipped_recipes().items():
        first = next((ln[len("description:"):].strip() for ln in path.read_text().splitlines()
                      if ln.startswith("description:")), "")
        lines.append(f"  {name:22s}{first}")
    return "shipped recipes:\n" + "\n".join(lines)


@command("compress")
def add_parser(sub) -> None:
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
        formatter_class=RAW,
    )
    add_model_argument(p)
    p.add_argument("--recipe", required=True, help="a recipe file (YAML) or a shipped recipe's name")
    p.add_argument("-o", "--output", required=True, help="run folder to create")
    p.add_argument("--resume", action="store_true", help="continue a run in OUTPUT, reusing finished stages")
    p.add_argument("--overwrite", action="store_true", help="delete OUTPUT and start again")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help=SET_HELP)
    p.add_argument("--check", action="store_true", help="validate the recipe and print its stages, run nothing")
    p.set_defaults(func=run)


@command("demo")
def add_demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="compress the embedded tiny model end to end (recipe tiny-demo) and print the summary",
        description="Runs `edgeldm compress tiny --recipe tiny-demo` into a fresh folder: prune -> finetune -> "
                    "distill -> export -> quantize -> evaluate -> bench, about 14 minutes on 2 AVX-512 CPU cores "
                    "(28 measured with AVX2 only), and prints the table of the "
                    "report (size, MACs, latency, prompt accuracy per stage).",
        epilog="example:\n  edgeldm demo -o demo && open demo/report/report.html",
        formatter_class=RAW,
    )
    p.add_argument("-o", "--output", default="edgeldm-demo", help="run folder (default edgeldm-demo)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo")
    p.add_argument("--overwrite", action="store_true", help="delete OUTPUT and start again")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override a tiny-demo option (see `edgeldm compress --help`)")
    p.set_defaults(func=run, model="tiny", recipe="tiny-demo", allow_pickle=False, check=False,
                   title="edgeldm demo: tiny, compressed by recipe tiny-demo")


def run(args) -> int:
    from ..errors import EdgeLDMError
    from ..stages.recipe import load_recipe

    if args.resume and args.overwrite:
        raise EdgeLDMError("--resume and --overwrite exclude each other")
    recipe = load_recipe(args.recipe, tuple(args.set))
    if args.check:
        print(f"recipe {recipe.name} ({recipe.source}): {recipe.description}")
        for i, stage in enumerate(recipe.stages, 1):
            gates = "".join(f"   [gate: {g.text}]" for g in stage.gates)
            print(f"  {i}. {stage.kind:9s} {' '.join(stage.argv())}{gates}")
        return 0
    from ..stages.runner import GateFailed, compress

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
    _print_summary(summary, getattr(args, "title", None))
    return 0


def _print_summary(summary: dict, title: str | None) -> None:
    from ..benchmarks.compress_report import headline, markdown_table

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

"""``edgeldm prune``: LD-Pruner structured pruning of the UNet."""

from __future__ import annotations

import json
import sys

from ..errors import EdgeLDMError
from . import command
from .common import RAW, add_stage_arguments, print_json


@command("prune")
def add_parser(sub) -> None:
    from ..stages.prune import PruneOptions

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
        formatter_class=RAW,
    )
    add_stage_arguments(p, PruneOptions, "pruned model folder to create (not needed with --score-only)", func=run,
                        output_required=False)
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="score cache: an interrupted run resumes from it (default OUTPUT.work/scores; required "
                        "with accelerate launch)")
    p.add_argument("--score-only", action="store_true", help="score every candidate and report; prune nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from ..options import from_namespace
    from ..stages.common import is_main_process
    from ..stages.prune import PruneOptions, prune, score_operators

    options = from_namespace(PruneOptions, args)
    if args.score_only:
        result = score_operators(args.model, options, allow_pickle=args.allow_pickle, cache_dir=args.cache)
        if is_main_process():  # under accelerate launch the others only helped score
            _print_scores(result.details, args.json)
        return 0
    if not args.output:
        raise EdgeLDMError("-o/--output is required (or pass --score-only)")
    result = prune(args.model, args.output, options, overwrite=args.overwrite, allow_pickle=args.allow_pickle,
                   cache_dir=args.cache)
    if result.output is None:  # a helper process of accelerate launch
        return 0
    if args.json:
        print_json(result.details)
        return 0
    r, inherited = result.details["report"], result.extra["inherited"]
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


def _print_scores(report: dict, as_json: bool) -> None:
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    print(f"{'score':>9} {'MACs saved':>12} {'params saved':>12} {'latency saved':>14}  modification")
    for c in report["candidates"]:
        lat = "" if c["latency_saved_s"] is None else f"{c['latency_saved_s'] * 1000:.2f} ms"
        print(f"{c['score']:9.4f} {c['macs_saved']:12,d} {c['params_saved']:12,d} {lat:>14}  "
              f"{c['modification']} {c['op']}")

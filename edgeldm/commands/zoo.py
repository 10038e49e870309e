"""``edgeldm zoo``: list the built-in models, or save one as a diffusers folder."""

from __future__ import annotations

import logging

from . import command
from .common import SEED, print_json

logger = logging.getLogger("edgeldm")


@command("zoo")
def add_parser(sub) -> None:
    p = sub.add_parser("zoo", help="list the built-in models, or save one as a diffusers folder",
                       description="The zoo holds architecture presets (real SD architectures with seeded random "
                                   "weights, for latency and memory at real scale) and models shipped with edgeldm.")
    zoo_sub = p.add_subparsers(dest="zoo_command", metavar="{list,save}", required=True)
    ls = zoo_sub.add_parser("list", help="list zoo models")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)
    save = zoo_sub.add_parser("save", help="write a zoo model as a diffusers folder (safetensors)",
                              description="Materialise a zoo model as a standard diffusers folder that any "
                                          "diffusers-based tool (and edgeldm) loads with from_pretrained.")
    save.add_argument("name", help="zoo model name")
    save.add_argument("-o", "--output", required=True, help="output folder (must not exist unless --overwrite)")
    save.add_argument("--seed", type=SEED, default=0, help="seed of the random weights of a preset (default 0)")
    save.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    save.set_defaults(func=run_save)


def run_list(args) -> int:
    from ..zoo import ZOO

    rows = [{"name": e.name, "kind": e.kind, "description": e.description} for e in ZOO.values()]
    if args.json:
        print_json(rows)
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


def run_save(args) -> int:
    from ..zoo import get_zoo_entry, save_zoo_model

    get_zoo_entry(args.name)  # clear error before any heavy import
    save_zoo_model(args.name, args.output, seed=args.seed, overwrite=args.overwrite)
    logger.info("saved %s to %s", args.name, args.output)
    return 0

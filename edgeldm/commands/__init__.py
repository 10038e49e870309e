"""The subcommands of ``edgeldm``: one module per command (family).

Each module registers its parser with :func:`command`; the parser's options come from the stage's options
dataclass (:mod:`edgeldm.options`) and its handler builds that dataclass and calls one library function of
:mod:`edgeldm.stages`, then prints. Nothing outside this package imports it (an import-linter contract).
"""

from __future__ import annotations

import argparse
from importlib import import_module
from typing import Callable

#: subcommand name -> function that adds its parser (one registry, filled by @command)
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}

#: the modules that register commands, in the order `edgeldm --help` lists them
MODULES = ("info", "zoo", "convert", "generate", "evaluate", "export", "run", "prune", "finetune", "distill",
           "distill_vae", "quantize", "compress", "bench")


def command(name: str):
    def register(add_parser: Callable[[argparse._SubParsersAction], None]):
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} registered twice")
        COMMANDS[name] = add_parser
        return add_parser

    return register


def load_commands() -> dict[str, Callable]:
    for module in MODULES:
        import_module(f"{__name__}.{module}")
    return COMMANDS


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in load_commands().values():
        add_parser(sub)

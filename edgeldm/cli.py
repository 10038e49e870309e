"""The ``edgeldm`` command line: the entry point and logging.

The subcommands live in :mod:`edgeldm.commands` (one module each; their options come from the stages' options
dataclasses and each calls one library function). Errors from the library
(:class:`~edgeldm.errors.EdgeLDMError`) are printed without a traceback (``--verbose`` shows it) and exit
non-zero; anything else is one line too, never a traceback unless asked (:mod:`edgeldm.entry`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .version import __version__
from .commands import add_subcommands
from .entry import run_guarded

logger = logging.getLogger("edgeldm")


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
    add_subcommands(parser)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_merge_bench_subcommands(list(sys.argv[1:] if argv is None else argv)))
    _configure_logging(args.verbose, args.quiet)
    return run_guarded(lambda: args.func(args), verbose=args.verbose)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

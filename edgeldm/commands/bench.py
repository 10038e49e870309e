"""``edgeldm bench`` (latency, memory, size, quality), ``bench compare`` (the regression gate) and
``bench report`` (charts of a history)."""

from __future__ import annotations

import json
import sys

from ..errors import EdgeLDMError
from . import command
from .common import RAW, image_output

EPILOG = """targets:
  BUNDLE                 our torch-free runtime on an exported bundle (--backend picks the graphs)
  onnx:BUNDLE, openvino:BUNDLE, coreml:BUNDLE
                         the runtime with that backend (two backends side by side)
  MODEL, diffusers:MODEL the torch pipeline through diffusers (a folder or a zoo name)
  optimum-ort:BUNDLE     optimum's ORTDiffusionPipeline on the bundle
  optimum-ov:BUNDLE      optimum-intel's OVDiffusionPipeline on the bundle (or on a folder optimum-intel
                         exported itself)

examples:
  edgeldm bench bundles/tiny --vs diffusers:tiny --repeat 10 --markdown
  edgeldm bench sd15 --steps 1 --height 256 --width 256 --repeat 3
  edgeldm bench onnx:bundles/sd15 --vs openvino:bundles/sd15 --steps 1 --height 256 --width 256
  edgeldm bench bundles/tiny --history bench-history --gate 10%    # CI: compare with the history, then append
  edgeldm bench bundles/tiny --json result.json && edgeldm bench compare result.json bench-history
  edgeldm bench report bench-history -o report/"""


@command("bench")
def add_parser(sub) -> None:
    from ..options import add_arguments
    from ..stages.bench import BenchOptions

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
        epilog=EPILOG, formatter_class=RAW,
    )
    p.add_argument("target", metavar="TARGET", help="what to time (see targets below)")
    add_arguments(p, BenchOptions)
    p.add_argument("--json", default=None, metavar="OUT", help="write the result document to OUT ('-': stdout)")
    p.add_argument("--history", default=None, metavar="DIR",
                   help="append the result (and a contact sheet) to DIR/<device fingerprint>/")
    p.add_argument("--gate", default=None, metavar="PCT",
                   help="with --history: before appending, compare the result with DIR's latest passing result of "
                        "this device and target (as `bench compare`) and exit 1 when a figure regressed more than "
                        "PCT, e.g. 10%%; the first run on a device becomes the baseline")
    p.add_argument("--sheet", default=None, metavar="PNG", help="write a contact sheet of the sample images")
    p.add_argument("--markdown", action="store_true", help="print a Markdown summary (for CI logs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atomic import atomic_write_text
    from ..benchmarks.bench import markdown_summary, parse_regression, write_sheet
    from ..options import from_namespace
    from ..stages.bench import BenchOptions, bench
    from ..stages.common import check_output

    options = from_namespace(BenchOptions, args)  # bench() checks it, and --gate against --history
    max_regression = None if args.gate is None else parse_regression(args.gate)
    # every output is checked before the measurement: a bad path must not cost the run its results
    for flag, value in (("--json", args.json), ("--sheet", args.sheet)):
        if value is not None and not str(value).strip():
            raise EdgeLDMError(f"{flag} was given an empty path", hint=f"name a file, or leave {flag} out")
    if args.json and args.json != "-":
        check_output(args.json, True, folder=False)
    if args.sheet:
        image_output(args.sheet, True)  # writable, and a format its suffix names
    result = bench(args.target, options, history=args.history, max_regression=max_regression,
                   command=" ".join(["edgeldm"] + sys.argv[1:]))
    document = result.details
    if "gate" in document:
        print_compare_rows(document["gate"]["rows"], sys.stderr if args.json == "-" else sys.stdout)
    if args.sheet:
        write_sheet(result.extra["samples"], args.sheet)
    text = json.dumps(document, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    elif args.json:
        atomic_write_text(args.json, text)
    if args.markdown or args.json != "-":  # with the document on stdout, the summary goes to stderr
        print(markdown_summary(document), file=sys.stderr if args.json == "-" else sys.stdout)
    if result.extra["regressed"]:
        print_regression(result.extra["regressed"], max_regression)
        return 1
    return 0


def print_compare_rows(rows: list[dict], file=None) -> None:
    for r in rows:
        print(f"{r['figure']:16s} new {r['new']:.6g}  baseline {r['baseline']:.6g}  ratio {r['ratio']:.3f}  "
              f"{'REGRESSED' if r['regressed'] else 'ok'}", file=file or sys.stdout)


def print_regression(regressed: list[dict], max_regression: float) -> None:
    print("error: regression beyond " + f"{max_regression:.0%}: " + ", ".join(
        f"{r['figure']} x{r['ratio']:.2f}" for r in regressed), file=sys.stderr)


@command("bench-compare")
def add_compare_parser(sub) -> None:
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
        formatter_class=RAW,
    )
    p.add_argument("new", metavar="NEW", help="the new result (JSON written by `edgeldm bench --json`)")
    p.add_argument("baseline", metavar="BASELINE", help="a baseline result file or a history folder")
    p.add_argument("--max-regression", default="10%", help="allowed slow-down per figure, e.g. 10%% or 0.1 "
                                                           "(default 10%%)")
    p.add_argument("--figures", default=None,
                   help="comma-separated figures to gate (default: image_s, unet_step_s, text_encoder_s, "
                        "vae_decode_s, cold_load_s, peak_rss_bytes and the resident peaks during each component: "
                        "text_encoder_peak_rss_bytes, unet_peak_rss_bytes, vae_decode_peak_rss_bytes)")
    p.add_argument("--markdown", action="store_true", help="print the comparison as Markdown")
    p.set_defaults(func=run_compare)


def run_compare(args) -> int:
    from ..benchmarks.bench import GATED_FIGURES, compare, load_results, markdown_compare, parse_regression, \
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
        print_compare_rows(rows)
    regressed = [r for r in rows if r["regressed"]]
    if regressed:
        print_regression(regressed, max_regression)
        return 1
    return 0


@command("bench-report")
def add_report_parser(sub) -> None:
    p = sub.add_parser(
        "bench-report", prog="edgeldm bench report",
        help="a static HTML report with charts from a bench history (also: bench report)",
        description="Draw a bench history: per-component latency bars per device, latency vs quality with the "
                    "Pareto front across variants, and the runs' contact sheets; PNG charts (matplotlib) and one "
                    "index.html that shows them.",
        epilog="example:\n  edgeldm bench report bench-history -o report/",
        formatter_class=RAW,
    )
    p.add_argument("history", metavar="HISTORY_DIR", help="a folder written by `edgeldm bench --history`")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.set_defaults(func=run_report)


def run_report(args) -> int:
    import logging

    from ..benchmarks.report import write_report
    from ..stages.common import check_output

    check_output(args.output, args.overwrite, inputs=(args.history,))
    logging.getLogger("edgeldm").info("wrote %s", write_report(args.history, args.output, overwrite=args.overwrite))
    return 0

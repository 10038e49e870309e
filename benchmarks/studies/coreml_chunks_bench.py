"""Core ML for the Neural Engine on an SD-size UNet: conversion, chunking and the chunks' sizes (issue #28).

    python -m edgeldm.benchmarks.studies.coreml_chunks_bench [--model sd15] [--size 512] [--attention split_einsum]
        [--precision fp16] [--chunks N] [--palettize 6] [--out DIR]

Converts the model's UNet to a Core ML package (static shapes, the image size given), splits it the way
``edgeldm export`` does (automatic: every chunk at most the Neural Engine's 1 GB; ``--chunks`` forces a count),
optionally palettizes each chunk, and prints one JSON line: seconds per phase, weights per chunk, the values
crossing each cut, peak RSS. Conversion only — Core ML prediction needs macOS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="coreml_chunks_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sd15", help="zoo preset or diffusers folder (default sd15)")
    p.add_argument("--size", type=int, default=512, help="image size in pixels (default 512)")
    p.add_argument("--attention", default="split_einsum", choices=("original", "split_einsum"))
    p.add_argument("--precision", default="fp16", choices=("fp32", "fp16"))
    p.add_argument("--chunks", type=int, default=None, help="force N chunks (default: as the 1 GB limit needs)")
    p.add_argument("--palettize", type=int, default=None, choices=(4, 6, 8), help="palettize each chunk to N bits")
    p.add_argument("--out", default=None, help="keep the packages here (default: a temporary folder)")
    args = p.parse_args(argv)

    from ...exporters.bundle import component_ios
    from ...exporters.coreml_chunks import split_package, weights_bytes
    from ...runtimes.backends.coreml_session import chunk_packages
    from ...exporters.coreml_export import COREML_PACKAGE, export_coreml
    from ...exporters.torch_modules import component_module
    from ...loading import load_pipeline

    result: dict = {"model": args.model, "size": args.size, "attention": args.attention, "precision": args.precision}
    with tempfile.TemporaryDirectory(prefix="edgeldm-coreml-bench-") as scratch:
        folder = Path(args.out or scratch) / "unet"
        start = time.perf_counter()
        pipe = load_pipeline(args.model)
        io = component_ios(pipe, args.size, args.size)["unet"].static()
        module = component_module(pipe, "unet")
        result["load_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        export_coreml(module, io, folder, precision=args.precision, attention=args.attention)
        del module, pipe
        result["convert_s"] = round(time.perf_counter() - start, 1)
        result["weights_bytes"] = weights_bytes(folder / COREML_PACKAGE)
        start = time.perf_counter()
        chunks = split_package(folder / COREML_PACKAGE, args.chunks)
        result["split_s"] = round(time.perf_counter() - start, 1)
        parts = chunk_packages(folder / chunks[0]["graph"]) if chunks else [folder / COREML_PACKAGE]
        result["chunks"] = [{"graph": part.name, "weights_bytes": weights_bytes(part),
                             "inputs": len(c["inputs"]), "outputs": len(c["outputs"])}
                            for part, c in zip(parts, chunks or [{"inputs": io.input_names, "outputs": io.output_names}])]
        if args.palettize:
            from ...compressor.quantize.coreml_schemes import _palettize
            from ...compressor.quantize.schemes import QuantOptions

            start = time.perf_counter()
            _palettize(args.palettize)(parts[0], folder.parent / "palettized", "unet", QuantOptions())
            result["palettize_s"] = round(time.perf_counter() - start, 1)
            for entry, part in zip(result["chunks"], parts):
                entry["palettized_bytes"] = weights_bytes(folder.parent / "palettized" / part.name)
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))

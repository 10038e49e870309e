"""Where a component's time goes, per operator type (issue #29): the runtimes' own profilers on one bundle graph.

    python -m edgeldm.benchmarks.op_profile BUNDLE [--component unet] [--backend openvino] [--size 512]
        [--runs 3] [--threads 2] [--top 15] [--json FILE]

* OpenVINO: the CPU plugin's per-layer counters (``PERF_COUNT``): real time of every executed layer, summed per
  layer type, and per kernel (``exec_type``: e.g. ``brgconv_avx2_I8`` against ``..._FP32``, which shows whether an
  INT8 graph really runs integer kernels, and what the plugin fused away: fused layers report no time);
* ONNX Runtime: its profiler (``SessionOptions.enable_profiling``): every node's kernel time, summed per op type.

Inputs are the component's declared I/O at the size asked (seeded; values do not change a dense graph's cost).
One warm-up run, then ``--runs`` profiled runs, averaged: ms per call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

#: the figures of one profile row
ROW = ("ms", "share", "nodes")


def component_inputs(manifest: dict, component: str, size: int | None) -> dict:
    """Seeded inputs of one call of ``component`` as the bundle's sampler makes it at ``size`` px (the bundle's size
    by default): the UNet on a batch of two under classifier-free guidance, of one for an LCM (guidance embedded)."""
    from ..exporters.dummy_inputs import example_inputs
    from ..manifest import component_io

    io = component_io(manifest, component)
    image, factor = manifest["image"], manifest["image"]["vae_scale_factor"]
    embedded = any(t.name == "timestep_cond" for t in component_io(manifest, "unet").inputs)
    guided = component == "unet" and manifest["defaults"]["guidance"] > 1 and not embedded
    dims = {"batch_size": 2 if guided else 1, "sequence_length": manifest["tokenizer"]["model_max_length"],
            "latent_height": (size or image["height"]) // factor, "latent_width": (size or image["width"]) // factor}
    return example_inputs(io, dims)


def _table(times: dict[str, float], nodes: dict[str, int], runs: int) -> dict:
    total = sum(times.values()) or 1.0
    rows = sorted(times, key=times.get, reverse=True)
    return {name: {"ms": times[name] / runs * 1e3, "share": times[name] / total, "nodes": nodes[name]}
            for name in rows}


def profile_openvino(graph: Path, inputs: dict, *, runs: int, threads: int | None,
                     inference_precision: str | None = None) -> dict:
    import openvino as ov

    config = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": inference_precision or "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(str(graph), "CPU", config)
    request = compiled.create_infer_request()
    request.infer(inputs)  # warm-up: allocations, kernel selection
    by_type, by_kernel = defaultdict(float), defaultdict(float)
    type_nodes, kernel_nodes = defaultdict(int), defaultdict(int)
    for _ in range(runs):
        request.infer(inputs)
        for layer in request.get_profiling_info():
            if str(layer.status).endswith("EXECUTED") and not str(layer.status).endswith("NOT_EXECUTED"):
                seconds = layer.real_time.total_seconds()
                by_type[layer.node_type] += seconds
                by_kernel[layer.exec_type] += seconds
                type_nodes[layer.node_type] += 1
                kernel_nodes[layer.exec_type] += 1
    nodes = {k: v // runs for k, v in type_nodes.items()}
    return {"total_ms": sum(by_type.values()) / runs * 1e3, "by_op_type": _table(by_type, nodes, runs),
            "by_kernel": _table(by_kernel, {k: v // runs for k, v in kernel_nodes.items()}, runs)}


def profile_onnxruntime(graph: Path, inputs: dict, *, runs: int, threads: int | None, **_) -> dict:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgeldm-ort-profile-") as tmp:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        session.run(None, inputs)  # warm-up outside the profile: the first run allocates and plans
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        session.run(None, inputs)
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_type, nodes = defaultdict(float), defaultdict(int)
    kernel_runs = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    for e in kernel_runs[len(kernel_runs) // (runs + 1):]:  # the first (warm-up) run of this session left out
        op = e.get("args", {}).get("op_name", "?")
        by_type[op] += e["dur"] / 1e6
        nodes[op] += 1
    return {"total_ms": sum(by_type.values()) / runs * 1e3,
            "by_op_type": _table(by_type, {k: v // runs for k, v in nodes.items()}, runs)}


PROFILERS = {"openvino": profile_openvino, "onnx": profile_onnxruntime}


def profile(bundle: str | Path, component: str = "unet", backend: str = "openvino", *, size: int | None = None,
            runs: int = 3, threads: int | None = None, inference_precision: str | None = None) -> dict:
    from ..errors import EdgeLDMError
    from ..manifest import graph_file, load_manifest
    from ..runtimes.backends import precision_options

    if backend not in PROFILERS:
        raise EdgeLDMError(f"no profiler for backend {backend!r}", hint=f"one of {', '.join(PROFILERS)}")
    if runs < 1:
        raise EdgeLDMError(f"--runs must be >= 1, got {runs}")
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    if component not in manifest["components"]:
        raise EdgeLDMError(f"{bundle} has no component {component!r}",
                           hint=f"one of {', '.join(manifest['components'])}")
    precision = precision_options(backend, inference_precision)  # refused where the backend offers no choice
    inputs = component_inputs(manifest, component, size)
    result = PROFILERS[backend](graph_file(bundle, manifest, component, backend), inputs, runs=runs, threads=threads,
                                **precision)
    return {"bundle": str(bundle), "component": component, "backend": backend, "size": size, "runs": runs,
            "inference_precision": precision.get("inference_precision"),
            "inputs": {k: list(v.shape) for k, v in inputs.items()}, **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.op_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--component", default="unet", help="text_encoder, unet or vae_decoder (default unet)")
    p.add_argument("--backend", default="openvino", choices=sorted(PROFILERS))
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: the bundle's)")
    p.add_argument("--runs", type=int, default=3, help="profiled runs after one warm-up (default 3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=15, help="rows printed per table (default 15)")
    p.add_argument("--inference-precision", default=None, metavar="PRECISION",
                   help="what OpenVINO computes in (default f32; bf16 on CPUs with AVX512_BF16 / AMX)")
    p.add_argument("--json", default=None, help="also write the profile to this file")
    args = p.parse_args(argv)
    out = profile(args.bundle, args.component, args.backend, size=args.size, runs=args.runs, threads=args.threads,
                  inference_precision=args.inference_precision)
    print(f"{args.component} on {args.backend}, {out['total_ms']:.1f} ms per call (profiled layers)")
    for table in ("by_op_type", "by_kernel"):
        if table in out:
            print(f"  {table.replace('_', ' ')}:")
            for name, row in list(out[table].items())[:args.top]:
                print(f"    {name:<32} {row['ms']:9.2f} ms  {row['share'] * 100:5.1f} %  x{row['nodes']}")
    from .fingerprint import emit_result

    emit_result(out, "op_profile", argv, backend=args.backend, threads=args.threads, json_path=args.json)
    return 0


if __name__ == "__main__":
    from ..entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))

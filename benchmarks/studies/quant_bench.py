"""Quantization figures, measured side by side (issue: quantization for every backend).

    python -m edgeldm.benchmarks.studies.quant_bench latency BUNDLE [--schemes openvino:hybrid,...] [--repeat 5]
    python -m edgeldm.benchmarks.studies.quant_bench quality BUNDLE [--schemes ...] [--prompts 200]
    python -m edgeldm.benchmarks.studies.quant_bench trajectory LCM_BUNDLE [--scheme onnx:qdq-static] [--prompts 200]

``latency`` (meant for the ``sd15`` bundle at 256 px): the UNet of each scheme against the fp32 UNet of the
same backend — size on disk, and one guided step (batch 2) timed alternately fp32 / quantized in one
process. Calibration is captured once and shared; quality floors are off (the preset's weights are
random, so PSNR means nothing there). The CPU's instruction-set extensions (VNNI, AMX) are recorded, since
INT8 speed depends on them.

``quality`` (``tiny`` or its LCM student): ``edgeldm eval`` metrics of every scheme's bundle through the
runtime, against the fp32 bundle on the same backend; the goal is joint accuracy within 2 points for INT8.

``trajectory``: a few-step (LCM) bundle quantized twice — calibrated on its own 4-step trajectory, and on a
25-step one — and evaluated at its default steps: does calibrating on the deployed timesteps pay off?
Outputs are kept under ``--out`` and reused on a rerun (resumable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DEFAULT_LATENCY_SCHEMES = ("openvino:int8-weights", "openvino:int4-weights", "openvino:hybrid", "openvino:w8a8",
                           "onnx:dynamic", "onnx:qdq-static", "onnx:int8-weights", "onnx:int4-weights")
DEFAULT_QUALITY_SCHEMES = DEFAULT_LATENCY_SCHEMES


def _split(spec: str) -> tuple[str, str]:
    backend, _, scheme = spec.partition(":")
    return backend, scheme


def _quantized(bundle: Path, out: Path, spec: str, calib_dir: Path | None, *, components=None, min_psnr=0.0,
               calibration=None, sensitivity: bool = False, calib_calls: int | None = None) -> Path:
    from ...compressor.quantize import QuantizeConfig, QuantOptions, quantize_bundle

    backend, scheme = _split(spec)
    target = out / (spec.replace(":", "-") + (f"-sensitivity{min_psnr:g}" if sensitivity else "")
                    + ("-" + "-".join(components) if components else ""))
    if not (target / "edgeldm.json").is_file():
        kwargs = {"calibration": calibration} if calibration is not None else {}
        if calib_calls:
            kwargs["options"] = QuantOptions(calib_samples=calib_calls)
        quantize_bundle(bundle, target, QuantizeConfig(backend=backend, scheme=scheme, components=components,
                                                       calibration_dir=str(calib_dir) if calib_dir else None,
                                                       min_psnr=min_psnr, sensitivity=sensitivity, image_prompts=0,
                                                       **kwargs), overwrite=True)
    return target


def _capture_once(bundle: Path, out: Path, samples: int, steps: int | None = None, name: str = "calibration") -> Path:
    from ...calibration.capture import CaptureConfig, capture

    path = out / name
    if not (path / "calibration.json").is_file():
        capture(bundle, path, CaptureConfig(samples=samples, steps=steps), overwrite=True)
    return path


def _graph_bytes(bundle: Path, backend: str) -> int:
    """Bytes of one backend's graphs in a bundle (an fp32 bundle may hold several backends)."""
    from ...manifest import load_manifest

    return sum((bundle / rel).stat().st_size for c in load_manifest(bundle)["components"].values()
               for rel in c["backends"].get(backend, {}).get("files", {}))


def latency(bundle: Path, out: Path, schemes: list[str], repeat: int, threads: int, calib_samples: int,
            calib_calls: int = 4) -> dict:
    from ...manifest import component_io, load_manifest, session_config
    from ...runtimes.backends import open_session
    from ..targets import folder_bytes
    from ..timing import alternate, summarize

    out.mkdir(parents=True, exist_ok=True)
    calib = _capture_once(bundle, out, calib_samples)
    manifest = load_manifest(bundle)
    io = component_io(manifest, "unet")
    latent = manifest["image"]["height"] // manifest["image"]["vae_scale_factor"]
    rng = np.random.default_rng(0)
    hidden = io.inputs[2].shape[-1]
    feeds = {"sample": rng.standard_normal((2, 4, latent, latent)).astype(np.float32),
             "timestep": np.asarray(500.0, dtype=np.float32),
             "encoder_hidden_states": rng.standard_normal((2, 77, hidden)).astype(np.float32)}
    graph = {"onnx": "model.onnx", "openvino": "openvino_model.xml"}
    fp32_bytes = {"onnx": (bundle / "unet" / "model.onnx").stat().st_size + sum(
        f.stat().st_size for f in (bundle / "unet").glob("*.onnx_data")),
        "openvino": (bundle / "unet" / "openvino_model.bin").stat().st_size}
    rows = {}
    saved = out / "latency.json"
    if saved.is_file():
        rows = json.loads(saved.read_text()).get("schemes", {})
    for spec in schemes:
        if spec in rows:
            continue
        backend, _ = _split(spec)
        print(f"quantizing {spec} ...", flush=True)
        q = _quantized(bundle, out, spec, calib, components=("unet",), calib_calls=calib_calls)
        size = folder_bytes(q / "unet") - sum(f.stat().st_size for f in (q / "unet").glob("*.json"))
        ref = open_session(backend, bundle / "unet" / graph[backend], io, threads=threads)
        cand = open_session(backend, q / "unet" / graph[backend], io, threads=threads,
                            **session_config(load_manifest(q), "unet", backend))
        a, b = alternate(lambda: ref(**feeds), lambda: cand(**feeds), repeat=repeat)
        ref = cand = None  # free both sessions before the next pair loads (sd15: GBs each)
        ratios = [y / x for x, y in zip(a, b)]
        rows[spec] = {"fp32": summarize(a).to_dict(), "quantized": summarize(b).to_dict(),
                      "latency_ratio_per_pair": ratios, "latency_ratio": float(np.median(ratios)),
                      "size_bytes": size, "fp32_size_bytes": fp32_bytes[backend],
                      "size_ratio": size / fp32_bytes[backend]}
        print(f"{spec:24s} size {rows[spec]['size_ratio']:.3f}x  UNet step {rows[spec]['latency_ratio']:.3f}x "
              f"(fp32 {rows[spec]['fp32']['median']:.2f} s)", flush=True)
        saved.write_text(json.dumps({"schemes": rows}, indent=2))
    return {"bundle": str(bundle), "threads": threads, "repeat": repeat, "unet_step": "guided (batch 2)",
            "latent": latent, "schemes": rows}


def _quality_of(bundle: Path, backend: str, prompts: int, steps: int | None, guidance: float | None) -> dict:
    from ...manifest import load_manifest
    from ..evaluate import EvalConfig, evaluate_bundle

    defaults = load_manifest(Path(bundle))["defaults"]
    steps = steps or defaults["steps"]
    guidance = defaults["guidance"] if guidance is None else guidance
    m = evaluate_bundle(bundle, EvalConfig(prompts=prompts, steps=steps, guidance=guidance), backend=backend).metrics
    return {"accuracy": m["accuracy"], "fd": m["fd"], "steps": steps, "guidance": guidance}


def _manifest(bundle):
    from ...manifest import load_manifest

    return load_manifest(bundle)


def quality(bundle: Path, out: Path, schemes: list[str], prompts: int, calib_samples: int,
            sensitivity_floor: float | None = None, components: tuple[str, ...] | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    calib = _capture_once(bundle, out, calib_samples)
    saved = out / "quality.json"
    rows = json.loads(saved.read_text()).get("rows", {}) if saved.is_file() else {}
    suffix = (f" --sensitivity --min-psnr {sensitivity_floor:g}" if sensitivity_floor is not None else "") + \
        (f" --components {','.join(components)}" if components else "")
    for spec in [f"{b}:fp32" for b in sorted({_split(s)[0] for s in schemes})] + schemes:
        key = spec if spec.endswith(":fp32") else spec + suffix
        if key in rows:
            continue
        backend, scheme = _split(spec)
        target = bundle if scheme == "fp32" else _quantized(
            bundle, out, spec, calib, min_psnr=sensitivity_floor or 0.0, sensitivity=sensitivity_floor is not None,
            components=components)
        rows[key] = _quality_of(target, backend, prompts, None, None)
        if scheme != "fp32":
            unet = _manifest(target)["components"]["unet"]["backends"][backend]["quantization"]
            rows[key]["unet_psnr_db"] = unet["parity"].get("psnr_db")
            rows[key]["kept_float"] = unet["exclude"]
            spec = key
            ref = rows[f"{backend}:fp32"]["accuracy"]["joint"]
            rows[spec]["joint_delta_points"] = 100 * (rows[spec]["accuracy"]["joint"] - ref)
            rows[spec]["size_ratio"] = _graph_bytes(target, backend) / _graph_bytes(bundle, backend)
        print(f"{key:24s} joint {rows[key]['accuracy']['joint']:.3f}  FD {rows[key]['fd']:.1f}", flush=True)
        saved.write_text(json.dumps({"rows": rows}, indent=2))
    return {"bundle": str(bundle), "prompts": prompts, "rows": rows}


def trajectory(bundle: Path, out: Path, spec: str, prompts: int, calib_samples: int, long_steps: int = 25) -> dict:
    from ...manifest import load_manifest

    out.mkdir(parents=True, exist_ok=True)
    default_steps = load_manifest(bundle)["defaults"]["steps"]
    rows = {}
    backend, _ = _split(spec)
    rows["fp32"] = _quality_of(bundle, backend, prompts, None, None)
    for label, steps in (("own", default_steps), (f"{long_steps}-step", long_steps)):
        calib = _capture_once(bundle, out, calib_samples, steps=steps, name=f"calibration-{label}")
        q = _quantized(bundle, out / label, spec, calib, min_psnr=0.0)
        rows[f"calibrated on {label} trajectory ({steps} steps)"] = _quality_of(q, backend, prompts, None, None)
        print(label, rows[f"calibrated on {label} trajectory ({steps} steps)"]["accuracy"]["joint"], flush=True)
    return {"bundle": str(bundle), "scheme": spec, "prompts": prompts, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.studies.quant_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="figure", required=True)
    lat = sub.add_parser("latency", help="UNet size and step latency per scheme vs fp32 (sd15 bundle)")
    lat.add_argument("bundle")
    lat.add_argument("--schemes", default=",".join(DEFAULT_LATENCY_SCHEMES))
    lat.add_argument("--repeat", type=int, default=5)
    lat.add_argument("--threads", type=int, default=2)
    lat.add_argument("--calib-samples", type=int, default=2, help="images captured (default 2)")
    lat.add_argument("--calib-calls", type=int, default=4,
                     help="UNet calls the activation schemes calibrate on (default 4: random weights, latency "
                          "only; ONNX Runtime's static calibration holds every activation of every call)")
    q = sub.add_parser("quality", help="tiny metrics per scheme vs fp32 through the runtime")
    q.add_argument("bundle")
    q.add_argument("--schemes", default=",".join(DEFAULT_QUALITY_SCHEMES))
    q.add_argument("--prompts", type=int, default=200)
    q.add_argument("--calib-samples", type=int, default=32)
    q.add_argument("--sensitivity-floor", type=float, default=None,
                   help="quantize with --sensitivity --min-psnr DB (UNet blocks kept float until met)")
    q.add_argument("--components", default=None,
                   help="comma-separated components to quantize, e.g. unet (default: the scheme's own choice)")
    t = sub.add_parser("trajectory", help="LCM bundle: own few-step trajectory vs 25-step calibration")
    t.add_argument("bundle")
    t.add_argument("--scheme", default="onnx:qdq-static")
    t.add_argument("--prompts", type=int, default=200)
    t.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--out", default="quant-bench", help="working folder (reused on a rerun)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.figure == "latency":
        result = latency(Path(args.bundle), out, args.schemes.split(","), args.repeat, args.threads,
                         args.calib_samples, args.calib_calls)
    elif args.figure == "quality":
        result = quality(Path(args.bundle), out, args.schemes.split(","), args.prompts, args.calib_samples,
                         args.sensitivity_floor, tuple(args.components.split(",")) if args.components else None)
    else:
        result = trajectory(Path(args.bundle), out, args.scheme, args.prompts, args.calib_samples)
    from ..fingerprint import emit_result

    emit_result(result, "quant_bench", argv, backend="onnx", threads=getattr(args, "threads", None),
                json_path=args.json)
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))

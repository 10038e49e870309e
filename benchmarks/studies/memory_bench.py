"""The memory floor on the device: peak resident memory of one image, normal against ``--low-memory``, side by
side in one run (issue #27, item 6).

    python -m edgeldm.benchmarks.studies.memory_bench --model sd15 --scheme openvino:int8-weights --size 512 \\
        --steps 2 --out /tmp/memory-bench [--larger 1024] [--json F]

1. exports MODEL at SIZE (ONNX + OpenVINO; cached under --out), quantizes it with SCHEME (cached);
2. benches the quantized bundle twice in two fresh processes, alternately: ``--low-memory`` (one component resident
   at a time, the VAE tiled at 32 latent pixels) against the normal mode, each reporting its process peak and the
   resident peak during each component's calls (``edgeldm bench``'s figures);
3. prints the ratios and the PSNR of the two images (they differ only by the VAE tiling);
4. with ``--larger PX``, benches ``--low-memory`` at PX against ``--low-memory`` at SIZE on the same dynamic bundle.

Memory figures are the OS's high-water marks, not timings: they hold beside other work, but the run is long.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..bench import COMPONENT_PEAK_FIGURES, run_bench
from ..quality import psnr
from ..targets import BenchConfig


def _bundles(model: str, scheme: str, size: int, out: Path, attention_slice: int | None = None) -> Path:
    from ...exporters.bundle import ExportConfig, export_bundle
    from .quant_bench import _capture_once, _quantized

    backend = scheme.split(":", 1)[0]
    fp32 = out / f"{Path(model).name}-{size}" if not attention_slice else \
        out / f"{Path(model).name}-{size}-slice{attention_slice}"
    if not (fp32 / "edgeldm.json").is_file():
        print(f"exporting {model} at {size} px ...", flush=True)
        export_bundle(model, fp32, ExportConfig(backends=("onnx", "openvino") if backend == "openvino" else
                                                (backend,), height=size, width=size,
                                                attention_slice=attention_slice), overwrite=True)
    print(f"quantizing with {scheme} (cached under {out}) ...", flush=True)
    calibration = _capture_once(fp32, out, samples=1, steps=2, name=f"calibration-{fp32.name}")
    return _quantized(fp32, fp32.with_name(fp32.name + "-q"), scheme, calibration)


def measure(bundle: Path, backend: str, steps: int, vae_tile: int | None) -> dict:
    base = BenchConfig(steps=steps, repeat=1, warmup=0, backend=backend, quality_prompts=0)
    low = replace(base, low_memory=True, vae_tile=vae_tile)
    result, (images, _) = run_bench(str(bundle), low, vs=str(bundle), vs_config=base,
                                    command="python -m edgeldm.benchmarks.studies.memory_bench")
    rows = {}
    for figure in ("peak_rss_bytes", *COMPONENT_PEAK_FIGURES.values()):
        a, b = result["figures"].get(figure), result["vs"]["figures"].get(figure)
        rows[figure] = {"low_memory_mib": None if a is None else a / 2**20,
                        "normal_mib": None if b is None else b / 2**20,
                        "ratio": None if not (a and b) else a / b}
    return {"bundle": str(bundle), "backend": backend, "steps": steps, "figures": rows,
            "image_s": {"low_memory": result["figures"]["image_s"]["median"],
                        "normal": result["vs"]["figures"]["image_s"]["median"]},
            "tiled_vs_untiled_psnr_db": float(psnr(images[:1], images[1:2])[0]),
            "fingerprint": result["fingerprint"]}


def measure_larger(bundle: Path, backend: str, steps: int, vae_tile: int | None, size: int, larger: int) -> dict:
    """``--low-memory`` at ``larger`` px against ``--low-memory`` at the export ``size``, one dynamic bundle, side by
    side: with the VAE tiled, only the UNet's activations should grow (issue #27: within 1.2x)."""
    low = BenchConfig(steps=steps, repeat=1, warmup=0, backend=backend, quality_prompts=0, low_memory=True,
                      vae_tile=vae_tile, height=size, width=size)
    result, _ = run_bench(str(bundle), replace(low, height=larger, width=larger), vs=str(bundle), vs_config=low,
                          command="python -m edgeldm.benchmarks.studies.memory_bench --larger")
    rows = {}
    for figure in ("peak_rss_bytes", *COMPONENT_PEAK_FIGURES.values()):
        a, b = result["figures"].get(figure), result["vs"]["figures"].get(figure)
        rows[figure] = {f"{larger}px_mib": None if a is None else a / 2**20,
                        f"{size}px_mib": None if b is None else b / 2**20,
                        "ratio": None if not (a and b) else a / b}
    return {"sizes": [larger, size], "figures": rows,
            "image_s": {str(larger): result["figures"]["image_s"]["median"],
                        str(size): result["vs"]["figures"]["image_s"]["median"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sd15", help="zoo name or diffusers folder (default sd15: seeded random "
                                                  "weights of SD v1.5's architecture)")
    p.add_argument("--scheme", default="openvino:int8-weights",
                   help="BACKEND:SCHEME of `edgeldm quantize` (default openvino:int8-weights: OpenVINO keeps the "
                        "weights INT8 in memory; ONNX Runtime's int8-weights dequantizes them at load)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--steps", type=int, default=2, help="denoising steps per image (memory does not grow with them)")
    p.add_argument("--vae-tile", type=int, default=None, help="the low-memory side's VAE tile (default: 32)")
    p.add_argument("--attention-slice", type=int, default=None,
                   help="export the UNet's attention sliced to N heads (edgeldm export --attention-slice)")
    p.add_argument("--out", default="memory-bench", help="where the bundles are cached (default ./memory-bench)")
    p.add_argument("--larger", type=int, default=None, metavar="PX",
                   help="also run --low-memory at PX (the same dynamic bundle) against --low-memory at --size")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = _bundles(args.model, args.scheme, args.size, out, args.attention_slice)
    figures = {"model": args.model, "scheme": args.scheme, "size": args.size, "attention_slice": args.attention_slice,
               **measure(bundle, args.scheme.split(":")[0], args.steps, args.vae_tile)}
    print(f"\n{args.model} {args.scheme} at {args.size} px, {args.steps} steps, attention slice "
          f"{args.attention_slice or 'none'} "
          f"({figures['fingerprint']['cpu']}, {figures['fingerprint']['cores']} cores)")
    print(f"{'figure':32} {'--low-memory':>14} {'normal':>10} {'ratio':>7}")
    for name, row in figures["figures"].items():
        def mib(v):
            return "n/a" if v is None else f"{v:,.0f} MiB"
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(f"{name:32} {mib(row['low_memory_mib']):>14} {mib(row['normal_mib']):>10} {ratio:>7}")
    print(f"image time: {figures['image_s']['low_memory']:.1f} s low-memory vs {figures['image_s']['normal']:.1f} s "
          f"normal; image PSNR low-memory vs normal (the VAE tiling): {figures['tiled_vs_untiled_psnr_db']:.1f} dB")
    if args.larger:
        larger = measure_larger(bundle, args.scheme.split(":")[0], args.steps, args.vae_tile, args.size, args.larger)
        figures["larger"] = larger
        print(f"\n--low-memory at {args.larger} px against {args.size} px (one dynamic bundle)")
        print(f"{'figure':32} {f'{args.larger} px':>14} {f'{args.size} px':>10} {'ratio':>7}")
        for name, row in larger["figures"].items():
            a, b = row[f"{args.larger}px_mib"], row[f"{args.size}px_mib"]
            ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
            print(f"{name:32} {'n/a' if a is None else f'{a:,.0f} MiB':>14} "
                  f"{'n/a' if b is None else f'{b:,.0f} MiB':>10} {ratio:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))

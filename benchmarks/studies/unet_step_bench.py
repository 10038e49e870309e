"""One UNet step of an architecture preset per backend and image size: torch, ONNX Runtime, OpenVINO (issue #30).

    python -m edgeldm.benchmarks.studies.unet_step_bench sdxl [--sizes 512,1024] [--backends torch,onnx,openvino]
                                                         [--batch 1] [--repeat 3] [--threads 2] [--json F]

A step is one UNet call at ``--batch`` (1: a few-step / no-guidance step; 2: one classifier-free-guided step),
fp32, the preset's seeded random weights (latency does not depend on weight values). SDXL's added conditions
(``text_embeds``, ``time_ids``) are fed as its pipeline feeds them.

Each backend holds the UNet alone, one after the other — an SDXL UNet is 10 GB in fp32 and two copies with a
runtime's working memory do not fit 24 GB: torch eager first; then the ONNX graph, exported once with dynamic
sizes (weights as external data), in ONNX Runtime; then that graph converted to OpenVINO IR, in OpenVINO.
Within a backend the sizes are timed alternately (one warm-up each, then rounds of every size), so noise hits
them alike; the figures of different backends come from one run on one machine but are not interleaved.
Peak resident memory is read per backend.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path


def _rounds(runners: dict, repeat: int) -> dict[str, list[float]]:
    """Every runner once as warm-up, then ``repeat`` rounds of all of them in turn: seconds per runner."""
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeat):
        for key, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - t0)
    return times


def measure(model: str, sizes: list[int], backends: list[str], *, batch: int, repeat: int, threads: int,
            seed: int = 0, log=print) -> dict:
    import torch

    from ...exporters.dummy_inputs import example_inputs
    from ...exporters.onnx_export import ONNX_FILE, export_onnx
    from ...exporters.openvino_export import OV_XML, export_openvino
    from ...exporters.torch_modules import UNetModule
    from ...io_spec import unet_io
    from ...runtimes.backends import open_session
    from ...zoo import get_zoo_entry
    from ...zoo.build import build_components
    from ..fingerprint import device_fingerprint
    from ..timing import ResidentPeak, summarize

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    unet = build_components(get_zoo_entry(model).folder, seed=seed, only=("unet",))["unet"]
    params = sum(p.numel() for p in unet.parameters())
    log(f"{model}: UNet built ({params / 1e9:.3f} B parameters, {time.perf_counter() - t0:.0f} s)")
    config = unet.config
    ios = {s: unet_io(config, latent_height=s // 8, latent_width=s // 8) for s in sizes}
    feeds = {s: example_inputs(io, {"batch_size": batch}, seed=seed) for s, io in ios.items()}
    out: dict = {"model": model, "batch": batch, "threads": threads, "repeat": repeat, "sizes": sizes,
                 "params": params, "backends": {}}

    peak = ResidentPeak()

    def record(backend: str, times: dict[int, list[float]]) -> None:
        rss = peak.window_peak()  # the backend's own window: its weights and working memory
        out["backends"][backend] = {"peak_rss_bytes": rss,
                                    **{str(s): summarize(t).to_dict() for s, t in times.items()}}
        log(f"{backend}: " + ", ".join(f"{s} px {summarize(t).median:.2f} s" for s, t in times.items())
            + " per step" + (f"; peak RSS {rss / 2**30:.1f} GiB" if rss else ""))

    module = UNetModule(unet).eval()
    if "torch" in backends:
        peak.start_window()
        torch_feeds = {s: tuple(torch.from_numpy(f[n]) for n in ios[s].input_names) for s, f in feeds.items()}

        def torch_step(size):
            def run():
                with torch.inference_mode():
                    module(*torch_feeds[size])
            return run

        record("torch", _rounds({s: torch_step(s) for s in sizes}, repeat))
    graph_backends = [b for b in backends if b != "torch"]
    if not graph_backends:
        return out
    with tempfile.TemporaryDirectory(prefix="edgeldm-unet-step-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        export_onnx(module, ios[sizes[0]], tmp / "onnx")  # dynamic sizes: one graph for every size
        log(f"exported to ONNX ({time.perf_counter() - t0:.0f} s)")
        del module, unet
        gc.collect()
        onnx_path = tmp / "onnx" / ONNX_FILE
        if "openvino" in graph_backends:
            t0 = time.perf_counter()
            export_openvino(onnx_path, ios[sizes[0]], tmp / "openvino")
            log(f"converted to OpenVINO IR ({time.perf_counter() - t0:.0f} s)")
            gc.collect()
        for backend in graph_backends:
            path = onnx_path if backend == "onnx" else tmp / "openvino" / OV_XML
            peak.start_window()
            session = open_session(backend, path, ios[sizes[0]], threads=threads)
            record(backend, _rounds({s: (lambda s=s: session(**feeds[s])) for s in sizes}, repeat))
            del session
            gc.collect()
    out["fingerprint"] = device_fingerprint(backend=",".join(backends), device="cpu", threads=threads)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.studies.unet_step_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="architecture preset (sdxl, ssd-1b, sd15, tiny-random-xl, ...)")
    p.add_argument("--sizes", default="512,1024", help="image sizes in pixels, comma-separated")
    p.add_argument("--backends", default="torch,onnx,openvino", help="any of torch, onnx, openvino")
    p.add_argument("--batch", type=int, default=1, help="UNet batch: 1 (no guidance) or 2 (a guided step)")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds after one warm-up")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)

    from ...loading import ensure_offline

    ensure_offline()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"torch", "onnx", "openvino"}
    if unknown:
        p.error(f"unknown backend(s) {', '.join(sorted(unknown))}: choose from torch, onnx, openvino")
    res = measure(args.model, [int(s) for s in args.sizes.split(",")], backends, batch=args.batch,
                  repeat=args.repeat, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))

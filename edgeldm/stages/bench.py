"""``edgeldm.bench``: latency per component, memory, size and quality of a model or bundle, optionally against
a second target and gated against a history."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from ..arguments import GUIDANCE, INFERENCE_PRECISION_HELP, LOW_MEMORY_HELP, THREADS, VAE_TILE_HELP
from ..benchmarks.targets import BenchConfig
from ..errors import EdgeLDMError
from ..options import check_positive, option, resolve, to_config
from .common import StageResult

logger = logging.getLogger("edgeldm")


@dataclass(frozen=True)
class BenchOptions:
    vs: str | None = option(None, "a second target, timed alternately with TARGET", metavar="OTHER")
    backend: str = option(BenchConfig.backend, "graphs a bundle target runs: onnx, openvino, ort_mobile, coreml or torch")
    device: str | None = option(BenchConfig.device, "backend device: an ONNX Runtime execution provider, an "
                                                    "OpenVINO device (CPU, GPU, NPU, AUTO), Core ML compute units, "
                                                    "or a torch device (default: the CPU)")
    steps: int | None = option(None, "denoising steps per image (default: the target's own - a bundle's manifest, "
                                     "4 for an LCM, else 25; 1 gives a UNet-step figure without a full image's cost)")
    guidance: float | None = option(None, "guidance scale, >= 0 (default: the target's own - a bundle's manifest, "
                                          "8 for an LCM, else 7.5)", parse=GUIDANCE)
    vs_steps: int | None = option(None, "steps per image for the --vs target (default: --steps if given, else the "
                                        "--vs target's own), e.g. 25 for a teacher vs a 4-step student")
    vs_guidance: float | None = option(None, "guidance scale of the --vs target (default: --guidance if given, "
                                             "else its own)", parse=GUIDANCE)
    height: int | None = option(BenchConfig.height, "image height (default: the model's)")
    width: int | None = option(BenchConfig.width, "image width (default: the model's)")
    repeat: int = option(BenchConfig.repeat, "timed images per target")
    warmup: int = option(BenchConfig.warmup, "untimed images first")
    threads: int | None = option(BenchConfig.threads, "CPU threads per target (default: the backend's)",
                                 parse=THREADS)
    quality_prompts: int | None = option(BenchConfig.quality_prompts,
                                         "held-out prompts for the quality metrics (default 50 when the target "
                                         "derives from tiny, else none; 0 turns them off)")
    verify: bool = option(BenchConfig.verify, "bundle targets: skip the SHA-256 check of the bundle's files against "
                                              "its manifest (paths must still stay inside the bundle)")
    low_memory: bool = option(BenchConfig.low_memory, "bundle targets: " + LOW_MEMORY_HELP)
    vae_tile: int | None = option(BenchConfig.vae_tile, "bundle targets: " + VAE_TILE_HELP.replace("N ", "VAE_TILE "),
                                  metavar="VAE_TILE")
    inference_precision: str | None = option(BenchConfig.inference_precision,
                                             "bundle targets: " + INFERENCE_PRECISION_HELP, metavar="PRECISION")
    vs_inference_precision: str | None = option(None, "the --vs target's --inference-precision (default: "
                                                      "--inference-precision), e.g. bf16 against f32 on one bundle",
                                                metavar="PRECISION")

    def check(self) -> None:
        check_positive(self, "steps", "repeat", "height", "width", "threads", "vs_steps", "vae_tile")
        if self.quality_prompts is not None and (self.quality_prompts < 0 or self.quality_prompts == 1):
            raise EdgeLDMError(f"--quality-prompts must be 0 (off) or at least 2, got {self.quality_prompts}")


def _first(*values):
    return next(v for v in values if v is not None)


def target_sampling(spec: str) -> dict:
    """Default steps / guidance of a bench target ``[kind:]location``, read without loading it."""
    from ..benchmarks.targets import parse_spec
    from ..lineage import default_sampling_of

    return default_sampling_of(parse_spec(spec)[2])


def configs(target: str, options: BenchOptions) -> tuple[BenchConfig, BenchConfig]:
    """The two sides' settings: an option given applies to both; otherwise each target samples as it was made
    to (an LCM bundle at its 4 steps against its teacher's 25), which is the comparison a user means."""
    own = target_sampling(target)
    config = to_config(BenchConfig, options, steps=options.steps or own["steps"],
                       guidance=_first(options.guidance, own["guidance"]))
    vs_own = target_sampling(options.vs) if options.vs else own
    vs_config = replace(config, steps=options.vs_steps or options.steps or vs_own["steps"],
                        guidance=_first(options.vs_guidance, options.guidance, vs_own["guidance"]),
                        inference_precision=options.vs_inference_precision or options.inference_precision)
    return config, vs_config


def bench(target: str, options: BenchOptions | None = None, *, history: str | Path | None = None,
          max_regression: float | None = None, command: str = "", **kwargs) -> StageResult:
    """Time ``target`` (and ``options.vs`` alternately) in fresh processes.

    With ``history`` the result is appended to ``HISTORY/<device fingerprint>/``; with ``max_regression``
    too (0.1 = 10 %), it is first compared with the history's latest passing result of this device and target:
    ``details["gate"]`` holds the verdict and ``extra["regressed"]`` the figures that got worse (a failed run
    never becomes a baseline). ``extra["samples"]`` are the sample images and their captions.
    """
    from ..atomic import check_appendable_folder
    from ..benchmarks.bench import append_history, gate, run_bench

    options = resolve(BenchOptions, options, kwargs)
    options.check()
    if max_regression is not None and history is None:
        raise EdgeLDMError("--gate compares with a history: give --history DIR too")
    if history is not None:
        check_appendable_folder(history)  # before the measurement: a bad path must not cost the run its results
    config, vs_config = configs(target, options)
    document, samples = run_bench(target, config, vs=options.vs, vs_config=vs_config,
                                  command=command or f"edgeldm.bench({target!r})")
    regressed = []
    if max_regression is not None:
        verdict = gate(document, history, max_regression)
        if verdict is None:
            logger.info("gate: no earlier result of this device and target in %s; this run is the baseline", history)
        else:
            document["gate"] = verdict
            regressed = [r for r in verdict["rows"] if r["regressed"]]
    if history is not None:
        logger.info("appended %s", append_history(document, history, samples))
    metrics = bench_metrics(document)
    return StageResult("bench", None, metrics, document, {"samples": samples, "regressed": regressed,
                                                          "baseline": bench_metrics(document["vs"])
                                                          if document.get("vs") else {}})


def bench_metrics(run: dict) -> dict:
    """What a bench gate reads: median latencies per image and component, cold load, peak memory, size."""
    from ..benchmarks.bench import COMPONENT_PEAK_FIGURES, figure_value

    f = run["figures"]
    out = {"image_latency": figure_value(f, "image_s"), "unet_step_latency": figure_value(f, "unet_step_s"),
           "text_encoder_latency": figure_value(f, "text_encoder_s"),
           "vae_decode_latency": figure_value(f, "vae_decode_s"), "cold_load": f["cold_load_s"],
           "peak_rss_bytes": f["peak_rss_bytes"], "size_bytes": f["size_bytes"],
           **{figure: f[figure] for figure in COMPONENT_PEAK_FIGURES.values() if f.get(figure) is not None},
           "unet_calls_per_image": f["unet_calls_per_image"]}
    if run.get("quality"):
        out.update(joint_accuracy=run["quality"]["accuracy"]["joint"], fd=run["quality"]["fd"])
    return out

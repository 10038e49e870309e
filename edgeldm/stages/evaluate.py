"""``edgeldm.evaluate``: prompt accuracy and Fréchet distance of a model or bundle on held-out scene prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..arguments import GUIDANCE, GUIDANCE_HELP, SEED
from ..benchmarks.evaluate import EvalConfig
from ..calibration.scenes import EVAL_SPLITS
from ..errors import EdgeLDMError
from ..lineage import LCM_SAMPLING, STANDARD_SAMPLING
from ..options import check_positive, option, resolve, to_config
from ..schedulers import SCHEDULERS
from .common import StageResult

#: the model's own sampling, when the options leave it open (lineage.sampling_defaults)
OWN_SAMPLING = (f"the model's own: {STANDARD_SAMPLING['steps']} / {STANDARD_SAMPLING['guidance']:g}, or "
                f"{LCM_SAMPLING['steps']} / {LCM_SAMPLING['guidance']:g} for an LCM; a bundle's from its manifest")


@dataclass(frozen=True)
class EvaluateOptions:
    prompts: int = option(EvalConfig.prompts, "number of held-out prompts")
    steps: int | None = option(None, f"denoising steps (default {OWN_SAMPLING})")
    guidance: float | None = option(None, f"{GUIDANCE_HELP} (default {OWN_SAMPLING})", parse=GUIDANCE)
    seed: int = option(EvalConfig.seed, "random seed, 0 to 2^64 - 1", parse=SEED)
    scheduler: str | None = option(EvalConfig.scheduler, "sampler to use instead of the model's own (default: the "
                                                         "model's scheduler)", choices=lambda: sorted(SCHEDULERS))
    split: str = option(EvalConfig.split, "heldout: new scenes of trained combinations; compositional: (shape, "
                                          "colour) pairs never seen in training", choices=EVAL_SPLITS)
    batch_size: int = option(EvalConfig.batch_size, "images per pipeline call")
    backend: str | None = option(None, "graphs a bundle runs: onnx, openvino, ort_mobile, coreml (default: onnx if the bundle "
                                       "has it, else the backend it has)")
    verify: bool = option(True, "a bundle MODEL: skip the SHA-256 check of the bundle's files against its manifest "
                                "(paths must still stay inside the bundle)")

    def check(self) -> None:
        check_positive(self, "steps", "prompts", "batch_size")
        if self.prompts < 2:
            raise EdgeLDMError(f"--prompts must be at least 2 (the Fréchet distance needs two), got {self.prompts}")


def is_bundle(path) -> bool:
    return (Path(path) / "edgeldm.json").is_file()


def evaluate(model: str | Path, options: EvaluateOptions | None = None, *, allow_pickle: bool = False,
             vae_ceiling: bool = False, **kwargs) -> StageResult:
    """Generate ``options.prompts`` held-out scene prompts with ``model`` (a model, or a bundle through the
    torch-free runtime) and score them: accuracy per attribute and joint, Fréchet distance.

    ``extra["result"]`` holds the images, captions and per-image verdicts; ``vae_ceiling`` also scores real
    scenes passed through the model's VAE (models only).
    """
    from ..benchmarks.evaluate import evaluate_bundle, evaluate_pipeline

    options = resolve(EvaluateOptions, options, kwargs)
    options.check()
    model = str(model)
    backend, pipe = options.backend, None
    if is_bundle(model):
        if vae_ceiling:
            raise EdgeLDMError("--vae-ceiling needs a model (the bundle has no VAE encoder to round-trip)")
        from ..manifest import default_backend, load_manifest

        manifest = load_manifest(Path(model))
        defaults = manifest["defaults"]
        backend = backend or default_backend(manifest)
    else:
        from ..exporters.bundle import default_sampling
        from ..lineage import lineage_base
        from ..loading import load_pipeline

        pipe = load_pipeline(model, allow_pickle=allow_pickle, families=("sd", "sdxl"))
        defaults = default_sampling(pipe, lineage_base(model))
    config = to_config(EvalConfig, options, steps=options.steps or defaults["steps"],
                       guidance=defaults["guidance"] if options.guidance is None else options.guidance)
    if pipe is None:
        result = evaluate_bundle(model, config, backend=backend, verify=options.verify)
    else:
        result = evaluate_pipeline(pipe, config, model_name=model)
    if vae_ceiling:
        from ..benchmarks.evaluate import vae_ceiling as ceiling

        result.metrics["vae_ceiling"] = ceiling(pipe, seed=config.seed, split=config.split)
    return StageResult("evaluate", None, eval_metrics(result.metrics), result.metrics, {"result": result})


def eval_metrics(m: dict) -> dict:
    """What an evaluate gate reads: accuracy per attribute and joint, Fréchet distance, seconds per image."""
    out = {f"{k}_accuracy": v for k, v in m["accuracy"].items()}
    out.update(fd=m["fd"], seconds_per_image=m["generation_seconds"] / max(m["images"], 1))
    return out

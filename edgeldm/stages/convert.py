"""``edgeldm.convert``: a single-file checkpoint (or any model) written as a standard diffusers folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..lora import check_lora_text
from ..options import option, resolve
from .common import StageResult, check_output, weights_bytes

logger = logging.getLogger("edgeldm")
PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class ConvertOptions:
    prediction_type: str | None = option(
        None, "what the UNet predicts, where the weights cannot tell: epsilon (SD 1.x, SD 2.x 512 px) or "
              "v_prediction (SD 2.x 768 px) (default: the matched architecture's scheduler config)",
        choices=PREDICTION_TYPES)
    original_config: str | None = option(
        None, "the checkpoint's original LDM .yaml (e.g. v2-inference-v.yaml): its parameterization sets the "
              "prediction type, its UNet channels are checked against the weights (default: FILE.yaml beside a "
              "single file, if there is one)", metavar="YAML")
    lora: tuple[str, ...] = option(
        (), "a LoRA adapter to fuse into the UNet and text encoder, FILE or FILE:SCALE (diffusers / PEFT or kohya "
            "keys; repeat the flag for several, fused in order)", repeat=True, metavar="FILE[:SCALE]",
        parse=check_lora_text)
    vae: str | None = option(
        None, "a replacement VAE: an AutoencoderKL folder or a .safetensors file (default: the model's own)",
        metavar="PATH")


def convert(source: str | Path, output: str | Path, options: ConvertOptions | None = None, *,
            overwrite: bool = False, allow_pickle: bool = False, **kwargs) -> StageResult:
    """Load ``source`` (a single-file checkpoint, a folder or a zoo name), fuse the LoRA adapters of
    ``options.lora`` and write it to ``output`` as a diffusers folder (safetensors) that any diffusers-based tool
    loads with ``from_pretrained``; the source and each adapter (name, digest, scale) are recorded in the folder's
    lineage, and from there in the manifest of every bundle exported from it."""
    from ..atomic import atomic_output_dir
    from ..lineage import write_lineage
    from ..loading import load_pipeline, resolve_source
    from ..lora import LoraSpec, fuse_loras, read_lora
    from ..manifest import sha256_file
    from ..replacement_vae import read_vae_source, replace_vae
    from ..saving import save_pipeline

    options = resolve(ConvertOptions, options, kwargs)
    kind, path = resolve_source(source)
    check_output(output, overwrite, inputs=(str(source),))
    specs = [LoraSpec.parse(text) for text in options.lora]
    for spec in specs:  # headers only: a missing or foreign adapter or VAE is refused before the model loads
        read_lora(spec)
    if options.vae:
        read_vae_source(options.vae)
    pipe = load_pipeline(source, allow_pickle=allow_pickle, families=("sd", "sdxl"), inpainting=True)
    scheduler = pipe.scheduler.config.get("prediction_type")
    prediction = _prediction_type(pipe, options, path if kind == "single-file" else None)
    if prediction is not None and prediction != scheduler:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction)
    elif prediction is None and kind == "single-file":
        logger.warning("assumed %s prediction (the matched architecture's scheduler); pass --prediction-type or "
                       "--original-config if the checkpoint was trained otherwise (SD 2.x 768-px models and "
                       "v-prediction SDXL finetunes predict v)", scheduler)
    loras = fuse_loras(pipe, specs)
    vae = replace_vae(pipe, options.vae) if options.vae else None
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        save_pipeline(pipe, tmp)
        record = {"source_kind": kind, "prediction_type": pipe.scheduler.config.get("prediction_type")}
        adapters = {k: v for k, v in (("lora", loras), ("vae", vae)) if v}
        if adapters:
            record["adapters"] = adapters
        if kind == "single-file":
            record["source_sha256"] = sha256_file(path)
        write_lineage(tmp, str(path.resolve()) if path is not None else str(source), "convert", **record)
    logger.info("wrote %s", output)
    return StageResult("convert", Path(output), {"size_bytes": weights_bytes(output)}, record)


def _prediction_type(pipe, options: ConvertOptions, single_file: Path | None) -> str | None:
    """--prediction-type, else the original LDM config's parameterization (given, or FILE.yaml beside the
    single file), else None (the matched architecture's scheduler decides)."""
    from ..errors import CheckpointError, EdgeLDMError
    from ..single_file import read_original_config

    yaml_path = Path(options.original_config) if options.original_config else None
    if yaml_path is None and single_file is not None and single_file.with_suffix(".yaml").is_file():
        yaml_path = single_file.with_suffix(".yaml")
        logger.info("using %s beside the checkpoint as its original config", yaml_path)
    if yaml_path is None:
        return options.prediction_type
    ldm = read_original_config(yaml_path)
    for key, ours in (("in_channels", pipe.unet.config.in_channels),
                      ("context_dim", pipe.unet.config.cross_attention_dim)):
        if ldm[key] is not None and ldm[key] != ours:
            raise CheckpointError(f"{yaml_path} describes a UNet with {key} {ldm[key]}; the weights have {ours}",
                                  hint="pass the .yaml that belongs to this checkpoint")
    if options.prediction_type is not None and options.prediction_type != ldm["prediction_type"]:
        raise EdgeLDMError(f"--prediction-type {options.prediction_type} contradicts {yaml_path} "
                           f"({ldm['prediction_type']})", hint="pass one of them")
    logger.info("%s prediction, from %s", ldm["prediction_type"], yaml_path)
    return ldm["prediction_type"]

"""``edgeldm.convert``: a single-file checkpoint (or any model) written as a standard diffusers folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

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


def convert(source: str | Path, output: str | Path, options: ConvertOptions | None = None, *,
            overwrite: bool = False, allow_pickle: bool = False, **kwargs) -> StageResult:
    """Load ``source`` (a single-file checkpoint, a folder or a zoo name) and write it to ``output`` as a diffusers
    folder (safetensors) that any diffusers-based tool loads with ``from_pretrained``; the source is recorded in
    the folder's lineage."""
    from ..atomic import atomic_output_dir
    from ..lineage import write_lineage
    from ..loading import load_pipeline, resolve_source
    from ..manifest import sha256_file
    from ..saving import save_pipeline

    options = resolve(ConvertOptions, options, kwargs)
    kind, path = resolve_source(source)
    check_output(output, overwrite, inputs=(str(source),))
    pipe = load_pipeline(source, allow_pickle=allow_pickle)
    scheduler = pipe.scheduler.config.get("prediction_type")
    if options.prediction_type is not None and options.prediction_type != scheduler:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                          prediction_type=options.prediction_type)
    elif kind == "single-file":
        logger.warning("assumed %s prediction (the matched architecture's scheduler); pass --prediction-type if "
                       "the checkpoint was trained otherwise (SD 2.x 768-px models predict v)", scheduler)
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        save_pipeline(pipe, tmp)
        record = {"source_kind": kind, "prediction_type": pipe.scheduler.config.get("prediction_type")}
        if kind == "single-file":
            record["source_sha256"] = sha256_file(path)
        write_lineage(tmp, str(path.resolve()) if path is not None else str(source), "convert", **record)
    logger.info("wrote %s", output)
    return StageResult("convert", Path(output), {"size_bytes": weights_bytes(output)}, record)

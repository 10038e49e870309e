"""SD 1.x and 2.x (and their pruned and distilled students: BK-SDM, LCM): one CLIP text encoder."""

from . import ModelFamily, register_family

SD = register_family(ModelFamily(
    name="sd",
    label="SD 1.x / 2.x",
    pipelines=("StableDiffusionPipeline", "LatentConsistencyModelPipeline"),
    inpainting_pipelines=("StableDiffusionInpaintPipeline",),
))

"""SDXL (and its distilled and pruned students: SDXL-Turbo / Lightning, SSD-1B, Vega, KOALA): two text encoders
— CLIP ViT-L and OpenCLIP ViT-bigG with its pooled projection — and a UNet conditioned on the pooled text
embedding and the micro-conditioning ``time_ids`` (original size, crop, target size)."""

from . import ModelFamily, register_family

SDXL = register_family(ModelFamily(
    name="sdxl",
    label="SDXL",
    pipelines=("StableDiffusionXLPipeline",),
    text_encoders=("text_encoder", "text_encoder_2"),
    tokenizers=("tokenizer", "tokenizer_2"),
    refused={
        "StableDiffusionXLImg2ImgPipeline": "an SDXL image-to-image or refiner pipeline, which edgeldm does not "
                                            "take yet (a base model saved as StableDiffusionXLPipeline loads)",
        "StableDiffusionXLInpaintPipeline": "an SDXL inpainting pipeline, which edgeldm does not take yet",
    },
    text_layer=-2,
    pooled_from="text_encoder_2",
    taken_by="every edgeldm command takes SDXL models; in Python, pass families=('sd', 'sdxl') to "
             "edgeldm.load_pipeline (its default is the SD family, for code written for one text encoder)",
))

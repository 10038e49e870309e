"""Single-file checkpoints: one ``.safetensors`` (or, opted in, ``.ckpt``) in the original Stable Diffusion
layout (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*``), the format of the
A1111 / ComfyUI world.

The architecture is told from the keys and shapes alone (the header, no weights read) and matched against
edgeldm's embedded zoo configs, so loading works offline; the weights are then converted by diffusers' own
``from_single_file`` with that config folder — no hand-written key mapping here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .components import INPAINT_CHANNELS, inpainting_refused, pipeline_class_of, skipped_components
from .errors import CheckpointError, CorruptWeightsError, PickledWeightsError
from .families import DEFAULT_FAMILIES, check_family

logger = logging.getLogger("edgeldm")

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.embedders.")
_UNET = "model.diffusion_model."
#: the class whose configs an inpainting file's are derived from (:func:`inpainting_configs`)
SD_PIPELINE = "StableDiffusionPipeline"
#: SDXL's embedders: base = CLIP ViT-L (0) + OpenCLIP ViT-bigG (1); a refiner has only the OpenCLIP one, as 0
_SDXL_CLIP_L = "conditioner.embedders.0.transformer."
_REFINER_TEXT = "conditioner.embedders.0.model."


def is_single_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES


def read_shapes(path: Path, *, allow_pickle: bool = False) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape (a safetensors header is read without its data)."""
    if path.suffix.lower() == ".ckpt":
        if not allow_pickle:
            raise PickledWeightsError(f"{path} is a pickled checkpoint (.ckpt); unpickling can run code",
                                      hint="pass --allow-pickle to read it with torch.load(weights_only=True), "
                                           "or convert it to .safetensors")
        import torch

        try:
            state = torch.load(path, map_location="meta", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad pickle
            raise CorruptWeightsError(f"{path} is not a readable checkpoint: {exc}") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else {}
        return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - SafetensorError for a truncated or foreign file
        raise CorruptWeightsError(f"{path} is not a readable safetensors file: {exc}",
                                  hint="the file may be truncated (an interrupted download); fetch it again") from None


@dataclass(frozen=True)
class Signature:
    """What tells the Stable Diffusion architectures apart, as read from a checkpoint or a config folder."""

    unet_channels: int  # the UNet's first block width
    unet_in_channels: int  # 4, or 9 for an inpainting UNet
    input_blocks: int  # UNet input blocks (levels x layers + downsamplers + conv_in)
    mid_block: bool
    context_dim: int  # the text embedding width the cross-attentions take (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)
    vae_channels: int
    transformer_blocks: int  # in the whole UNet: what SDXL's pruned students (SSD-1B, Vega, KOALA) removed


def _per_block(value, blocks: int) -> list:
    """A per-block config value (an int for every block, or a list of one per block)."""
    return list(value) if isinstance(value, (list, tuple)) else [value] * blocks


def _layers_sum(depth, layers: int) -> int:
    """Transformer blocks of one UNet block: a depth for each of its layers, or one depth for all."""
    return sum(depth) if isinstance(depth, (list, tuple)) else depth * layers


def _config_transformer_blocks(unet: dict) -> int:
    """Transformer blocks a UNet config builds, counted as diffusers' ``UNet2DConditionModel`` lays them out."""
    down, up = unet["down_block_types"], unet["up_block_types"]
    layers = _per_block(unet.get("layers_per_block", 2), len(down))
    depth = _per_block(unet.get("transformer_layers_per_block", 1), len(down))
    total = sum(_layers_sum(depth[i], layers[i]) for i, kind in enumerate(down) if "CrossAttn" in kind)
    if unet.get("mid_block_type", "UNetMidBlock2DCrossAttn") == "UNetMidBlock2DCrossAttn":
        last = depth[-1]  # the mid block takes the innermost stage's depth (its last layer's, if per layer)
        total += last[-1] if isinstance(last, (list, tuple)) else last
    reverse = unet.get("reverse_transformer_layers_per_block") or list(reversed(depth))
    up_layers = list(reversed(layers))
    total += sum(_layers_sum(reverse[i], up_layers[i] + 1) for i, kind in enumerate(up) if "CrossAttn" in kind)
    return total


def checkpoint_signature(shapes: dict[str, tuple[int, ...]], path: Path) -> Signature:
    conv_in = shapes.get(_UNET + "input_blocks.0.0.weight")
    vae_in = shapes.get("first_stage_model.encoder.conv_in.weight")
    if conv_in is None and any(k.startswith(("down_blocks.", "encoder.down_blocks.", "text_model.")) for k in shapes):
        from .errors import NotADiffusersFolderError

        raise NotADiffusersFolderError(f"{path} is a file holding one diffusers component, not a whole model",
                                       hint="pass the diffusers folder it belongs to (the one with "
                                            "model_index.json), or a single-file checkpoint in the original SD "
                                            "layout")
    if conv_in is not None and any(k.startswith(_REFINER_TEXT) for k in shapes) and not any(
            k.startswith(_SDXL_CLIP_L) for k in shapes):
        from .errors import UnsupportedPipelineError

        raise UnsupportedPipelineError(f"{path} is an SDXL refiner checkpoint (one OpenCLIP text encoder, no "
                                       "CLIP ViT-L); edgeldm does not take refiners yet",
                                       hint="pass an SDXL base checkpoint, or an SD 1.x / 2.x one")
    if conv_in is None or vae_in is None:
        found = sorted({k.split(".")[0] for k in shapes})[:6]
        raise CheckpointError(f"{path}: its keys match no Stable Diffusion single-file layout (top-level names "
                              f"found: {', '.join(found) or 'none'}; {len(shapes)} tensors)",
                              hint="expected model.diffusion_model.*, first_stage_model.*, and cond_stage_model.* "
                                   "(SD 1.x / 2.x) or conditioner.embedders.* (SDXL); a diffusers folder loads as "
                                   "a folder")
    blocks = {int(k[len(_UNET):].split(".")[1]) for k in shapes if k.startswith(_UNET + "input_blocks.")}
    context = next((s[1] for k, s in shapes.items() if k.startswith(_UNET) and k.endswith("attn2.to_k.weight")), 0)
    transformers = {k.split(".transformer_blocks.")[0] + "." + k.split(".transformer_blocks.")[1].split(".")[0]
                    for k in shapes if k.startswith(_UNET) and ".transformer_blocks." in k}
    return Signature(unet_channels=conv_in[0], unet_in_channels=conv_in[1], input_blocks=len(blocks),
                     mid_block=any(k.startswith(_UNET + "middle_block.") for k in shapes), context_dim=context,
                     vae_channels=vae_in[0], transformer_blocks=len(transformers))


def config_signature(folder: Path) -> Signature:
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    levels, layers = len(unet["block_out_channels"]), unet.get("layers_per_block", 2)
    has_attention = any("CrossAttn" in t for t in unet["down_block_types"] + unet["up_block_types"])
    return Signature(unet_channels=unet["block_out_channels"][0], unet_in_channels=unet.get("in_channels", 4),
                     input_blocks=1 + levels * layers + levels - 1,
                     mid_block=unet.get("mid_block_type", "UNetMidBlock2DCrossAttn") is not None,
                     context_dim=unet.get("cross_attention_dim", 1280) if has_attention else 0,
                     vae_channels=vae["block_out_channels"][0], transformer_blocks=_config_transformer_blocks(unet))


def match_config(path: Path, *, allow_pickle: bool = False) -> tuple[str, Path]:
    """(zoo name, config folder) of the embedded architecture ``path``'s weights fit; an inpainting file (a
    9-channel ``conv_in``: latents, mask, masked-image latents) gets that architecture's configs with the UNet's
    input widened and the inpainting pipeline class (:func:`inpainting_configs`)."""
    from dataclasses import replace

    from .zoo import ZOO

    found = checkpoint_signature(read_shapes(path, allow_pickle=allow_pickle), path)
    if found.unet_in_channels not in (4, INPAINT_CHANNELS):
        raise CheckpointError(f"{path}: a UNet with {found.unet_in_channels} input channels is not a text-to-image "
                              f"(4) or inpainting ({INPAINT_CHANNELS}) Stable Diffusion UNet")
    base = replace(found, unet_in_channels=4)
    for name, entry in ZOO.items():
        if (entry.folder / "unet" / "config.json").is_file() and config_signature(entry.folder) == base:
            if found.unet_in_channels == INPAINT_CHANNELS:
                if pipeline_class_of(entry.folder) != SD_PIPELINE:
                    raise CheckpointError(f"{path} is an inpainting checkpoint of the {name} architecture; "
                                          "edgeldm takes inpainting checkpoints of SD 1.x / 2.x only")
                return f"{name}-inpainting", inpainting_configs(name, entry.folder)
            return name, entry.folder
    known = ", ".join(ZOO)
    raise CheckpointError(f"{path}: no embedded architecture has these shapes ({json.dumps(asdict(found))})",
                          hint=f"single files of these architectures (and their inpainting variants) load: {known}")




def inpainting_configs(name: str, folder: Path) -> Path:
    """The embedded configs of ``name`` as an inpainting model: a folder under the temporary directory (never
    beside the user's input), written once and atomically, reused after."""
    import shutil
    import tempfile

    from .version import __version__

    target = Path(tempfile.gettempdir()) / f"edgeldm-{__version__}-configs" / f"{name}-inpainting"
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    shutil.copytree(folder, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    unet = json.loads((tmp / "unet" / "config.json").read_text())
    (tmp / "unet" / "config.json").write_text(json.dumps({**unet, "in_channels": INPAINT_CHANNELS}, indent=2))
    index = json.loads((tmp / "model_index.json").read_text())
    (tmp / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionInpaintPipeline"},
                                                     indent=2))
    try:
        tmp.rename(target)
    except OSError:  # another process wrote it first: theirs is the same
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_single_file(path: Path, *, allow_pickle: bool = False, dtype=None, inpainting: bool = False,
                     families=DEFAULT_FAMILIES):
    """A diffusers pipeline from a single-file checkpoint (see the module docstring); an inpainting checkpoint
    only where the caller takes one (``inpainting``), a model family only where the caller takes it."""
    from ._lazy import require

    name, folder = match_config(path, allow_pickle=allow_pickle)
    pipeline_class = pipeline_class_of(folder)
    family = check_family(path, pipeline_class, families)
    if name.endswith("-inpainting") and not inpainting:
        raise CheckpointError(inpainting_refused(path),
                              hint="use a text-to-image checkpoint (4-channel UNet) for those")
    logger.info("loading %s as a single file of the %s architecture (configs embedded in edgeldm)", path, name)
    require("torch")
    diffusers = require("diffusers")
    extra = {}
    for tokenizer in family.tokenizers:
        if not (folder / tokenizer / "vocab.json").is_file():  # a preset's configs: the embedded CLIP vocabulary
            from .zoo.build import clip_tokenizer, read_json

            extra[tokenizer] = clip_tokenizer(read_json(folder / tokenizer / "tokenizer_config.json"))
    try:
        pipeline_cls = getattr(diffusers, pipeline_class)
        pipe = pipeline_cls.from_single_file(
            str(path), config=str(folder), local_files_only=True, torch_dtype=dtype,
            **skipped_components(pipeline_cls), **extra)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"diffusers could not load the single file {path}: {exc}") from exc
    for component in family.weighted:
        getattr(pipe, component).eval()
    return pipe


def config_folder(path: Path, *, allow_pickle: bool = False) -> Path:
    """The embedded config folder that describes a single-file checkpoint's architecture."""
    return match_config(path, allow_pickle=allow_pickle)[1]


def read_original_config(path: Path) -> dict:
    """What an original LDM ``.yaml`` (``v1-inference.yaml``, ``v2-inference-v.yaml``) says that the weights
    cannot: the parameterization, plus the UNet's input channels and text width to check the file against."""
    import yaml

    from .errors import CheckpointNotFoundError

    if not path.is_file():
        raise CheckpointNotFoundError(f"original config {path} does not exist")
    try:
        params = yaml.safe_load(path.read_text())["model"]["params"]
        unet = params["unet_config"]["params"]
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not an original LDM config (model.params.unet_config.params): {exc}",
                              hint="the .yaml that came with the checkpoint, e.g. v2-inference-v.yaml") from None
    return {"prediction_type": "v_prediction" if params.get("parameterization") == "v" else "epsilon",
            "in_channels": unet.get("in_channels"), "context_dim": unet.get("context_dim")}

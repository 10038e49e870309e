"""Checking a diffusers checkpoint folder before anything loads it.

Every way a user's folder can be wrong is detected here, from configs and safetensors headers only
(no tensor data is read), and reported as one typed :class:`~edgeldm.errors.CheckpointError` that
names the file and says what to do. Loading proper stays with diffusers / transformers
(:mod:`edgeldm.loading`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .components import build_model_from_config, component_spec, inpainting_refused, read_json
from .errors import (
    CheckpointNotFoundError,
    CorruptWeightsError,
    MissingComponentError,
    NotADiffusersFolderError,
    PickledWeightsError,
    UnsupportedPipelineError,
    WeightShapeMismatchError,
)
from .families import DEFAULT_FAMILIES, ModelFamily, check_family

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")
#: safetensors dtype codes -> torch / numpy names
DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
               "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
MAX_REPORTED = 8


@dataclass
class ComponentFiles:
    """The weights of one component as found on disk."""

    name: str
    library: str
    class_name: str
    folder: Path
    weight_format: str  # "safetensors" | "pickle"
    weight_files: list[Path]
    size_bytes: int
    dtype: str | None = None  # dominant dtype by element count (safetensors only)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)


@dataclass
class CheckpointFolder:
    """A diffusers pipeline folder that passed every check."""

    path: Path
    pipeline_class: str
    model_index: dict
    components: dict[str, ComponentFiles]
    family: ModelFamily

    @property
    def uses_pickle(self) -> bool:
        return any(c.weight_format == "pickle" for c in self.components.values())

    def spec(self, name: str) -> tuple[str, str]:
        return component_spec(self.model_index, name)


def read_model_index(path: Path) -> dict:
    index_file = path / "model_index.json"
    if not path.exists():
        raise CheckpointNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise NotADiffusersFolderError(
            f"{path} is a file, not a diffusers pipeline folder",
            hint="single-file checkpoints (.safetensors/.ckpt) must first be converted to the diffusers layout "
            "(diffusers' StableDiffusionPipeline.from_single_file(...).save_pretrained(DIR))",
        )
    if not index_file.is_file():
        raise NotADiffusersFolderError(
            f"{path} is not a diffusers pipeline folder: it has no model_index.json",
            hint="pass the folder that contains model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/",
        )
    try:
        index = read_json(index_file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotADiffusersFolderError(f"{index_file} is not valid JSON: {exc}") from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise NotADiffusersFolderError(f"{index_file} has no '_class_name': not a diffusers model_index.json")
    return index


def check_checkpoint(path: str | Path, *, allow_pickle: bool = False, check_shapes: bool = True,
                     inpainting: bool = False, families=DEFAULT_FAMILIES) -> CheckpointFolder:
    """Validate a diffusers folder; raise a :class:`CheckpointError` subclass on the first problem. An
    inpainting pipeline passes only where the caller takes one (``inpainting``), a model family only where the
    caller takes it (``families``: names in :data:`edgeldm.families.FAMILIES`)."""
    path = Path(path)
    index = read_model_index(path)
    pipeline_class = index["_class_name"]
    family = check_family(path, pipeline_class, families)
    if pipeline_class in family.inpainting_pipelines and not inpainting:
        raise UnsupportedPipelineError(inpainting_refused(path),
                                       hint="use a text-to-image model (4-channel UNet) for those")
    for name in family.components:
        if component_spec(index, name) is None:
            raise MissingComponentError(f"{path / 'model_index.json'} does not declare the '{name}' component"
                                        + (f" (an {family.label} model has {len(family.text_encoders)} text "
                                           "encoders)" if name in family.text_encoders else ""))
        if not (path / name).is_dir():
            raise MissingComponentError(f"component folder {path / name} is missing (declared in model_index.json)")
    for name in family.tokenizers:
        _check_tokenizer(path / name)
    if not (path / "scheduler" / "scheduler_config.json").is_file():
        raise MissingComponentError(f"{path / 'scheduler'} has no scheduler_config.json")

    components = {}
    for name in family.weighted:
        library, class_name = component_spec(index, name)
        files = _find_weights(path / name, name, library, class_name, allow_pickle=allow_pickle)
        if check_shapes and files.weight_format == "safetensors":
            _check_shapes(files, pruned_skeleton(files.folder) if name == "unet" else None)
        components[name] = files
    return CheckpointFolder(path=path, pipeline_class=pipeline_class, model_index=index, components=components,
                            family=family)


def _check_tokenizer(folder: Path) -> None:
    has_slow = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    if not (has_slow or (folder / "tokenizer.json").is_file()):
        raise MissingComponentError(f"{folder} has neither vocab.json + merges.txt nor tokenizer.json")


def _find_weights(folder: Path, name: str, library: str, class_name: str, *, allow_pickle: bool) -> ComponentFiles:
    if not (folder / "config.json").is_file():  # diffusers and transformers models alike
        raise MissingComponentError(f"{folder} has no config.json")
    all_files = sorted(p for p in folder.iterdir() if p.is_file())
    # variants such as diffusion_pytorch_model.fp16.safetensors are not picked up by default loading
    plain = [p for p in all_files if len(p.name.split(".")) == 2]
    safetensors = [p for p in plain if p.suffix == SAFETENSORS_SUFFIX]
    pickles = [p for p in plain if p.suffix in PICKLE_SUFFIXES]
    if safetensors:
        fmt, files = "safetensors", safetensors
    elif pickles:
        if not allow_pickle:
            raise PickledWeightsError(
                f"{folder} has only pickled weights ({', '.join(p.name for p in pickles)}); "
                "unpickling can run arbitrary code, so edgeldm refuses it by default",
                hint="convert them to safetensors, or pass --allow-pickle (allow_pickle=True) if you trust the file; "
                "they are then read with torch.load(weights_only=True)",
            )
        fmt, files = "pickle", pickles
    else:
        variants = [p.name for p in all_files if p.suffix in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES)]
        raise MissingComponentError(
            f"{folder} has no weights file",
            hint=f"only variant files are present ({', '.join(variants)}); rename the one to use" if variants else None,
        )
    size = sum(p.stat().st_size for p in all_files)
    result = ComponentFiles(name, library, class_name, folder, fmt, files, size)
    if fmt == "safetensors":
        _read_safetensors_headers(result)
    return result


def _read_safetensors_headers(files: ComponentFiles) -> None:
    from ._lazy import require

    safe_open = require("safetensors").safe_open
    numel_by_dtype: Counter[str] = Counter()
    for weight_file in files.weight_files:
        if weight_file.stat().st_size < 8:
            raise CorruptWeightsError(f"{weight_file} is empty or truncated ({weight_file.stat().st_size} bytes)")
        try:
            # header only: safetensors checks that the data section covers every tensor it declares
            with safe_open(str(weight_file), framework="np") as handle:
                for key in handle.keys():
                    sl = handle.get_slice(key)
                    shape = tuple(sl.get_shape())
                    files.shapes[key] = shape
                    n = 1
                    for d in shape:
                        n *= d
                    numel_by_dtype[sl.get_dtype()] += n
        except Exception as exc:  # SafetensorError is not importable as a stable name across versions
            raise CorruptWeightsError(
                f"{weight_file} is not a readable safetensors file: {exc}",
                hint="the file is probably truncated (interrupted download or copy); copy it again",
            ) from None
    if numel_by_dtype:
        code = numel_by_dtype.most_common(1)[0][0]
        files.dtype = DTYPE_NAMES.get(code, code.lower())


def pruned_skeleton(unet_folder: Path):
    """For a pruned UNet folder (``edgeldm_pruning.json`` beside its weights): the meta model the plan
    rebuilds — its ``config.json`` alone is the unpruned architecture. None for an unpruned UNet."""
    from .compressor.plan import pruned_unet_skeleton, read_plan

    plan = read_plan(unet_folder)
    return None if plan is None else pruned_unet_skeleton(unet_folder, plan)


def _check_shapes(files: ComponentFiles, model=None) -> None:
    """Compare the stored tensor shapes with a meta model built from the component's config (or given)."""
    from .zoo.random_init import empty_weights

    pruned = model is not None
    if model is None:
        try:
            with empty_weights():
                model = build_model_from_config(files.library, files.class_name, files.folder)
        except (ValueError, TypeError, KeyError, OSError) as exc:
            raise MissingComponentError(
                f"{files.folder / 'config.json'} does not describe a {files.class_name}: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mismatched = [
        f"{key}: file {tuple(shape)} vs config {expected[key]}"
        for key, shape in files.shapes.items()
        if key in expected and tuple(shape) != expected[key]
    ]
    # diffusers renames some legacy keys on load, so missing keys are only judged for transformers models
    missing = []
    if pruned:  # a pruned UNet is ours: its keys are exact
        mismatched += [f"{key}: not in the pruned architecture" for key in sorted(set(files.shapes) - set(expected))]
    if files.library == "transformers" or pruned:
        params = {k for k, _ in model.named_parameters()}
        missing = sorted(params - set(files.shapes))
    if mismatched or missing:
        lines = [*mismatched[:MAX_REPORTED]] + [f"{key}: missing from the weights" for key in missing[:MAX_REPORTED]]
        more = len(mismatched) + len(missing) - len(lines)
        raise WeightShapeMismatchError(
            f"weights in {files.folder} do not match its config.json ({files.class_name}); "
            f"{len(mismatched)} tensor(s) with another shape, {len(missing)} missing:\n    "
            + "\n    ".join(lines)
            + (f"\n    … and {more} more" if more > 0 else ""),
            hint="the config and the weights come from different architectures; copy the matching config.json",
        )

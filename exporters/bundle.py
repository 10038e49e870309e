"""``edgeldm export``: a model -> one bundle folder of ONNX / OpenVINO / Core ML graphs with a manifest.

The layout follows optimum's, so ``ORTStableDiffusionPipeline`` and ``OVStableDiffusionPipeline`` load an
edgeldm bundle as well: ``model_index.json``, ``scheduler/``, ``tokenizer/`` and per component
(``text_encoder/``, ``unet/``, ``vae_decoder/``, optionally ``vae_encoder/``) the graphs with the
component's ``config.json``; beside them ``edgeldm.json`` (:mod:`edgeldm.manifest`).
Every graph is validated against its torch module before the bundle appears (atomically).
"""

from __future__ import annotations

import datetime
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..version import __version__
from ..atomic import atomic_output_dir
from ..errors import EdgeLDMError
from ..io_spec import ComponentIO, text_encoder_io, unet_io, vae_decoder_io, vae_encoder_io
from ..contract import generation_contract
from ..manifest import FORMAT, FORMAT_VERSION, digest_files, sha256_file, write_manifest
from ..progress import progress_bar
from ..backends import BACKENDS, load
from .job import ExportJob
from .validation import DEFAULT_TOLERANCES, ExportValidationError, ValidationReport

logger = logging.getLogger("edgeldm")

#: the graphs of every bundle besides its family's text encoders (and the optional VAE encoder)
COMPONENTS = ("unet", "vae_decoder")
#: pipeline config keys the generation contract reads
PIPELINE_SWITCHES = ("force_zeros_for_empty_prompt",)
#: the model families export takes
FAMILIES = ("sd", "sdxl")
#: graph precisions an export writes (fp16 keeps the VAE in fp32 unless asked)
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class ExportConfig:
    backends: tuple[str, ...] = ("onnx", "openvino")
    precision: str = "fp32"  # fp32 | fp16
    height: int | None = None  # default: the model's native size
    width: int | None = None
    static: bool = False
    vae_encoder: bool = False
    fp16_vae_decoder: bool = False  # fp16 VAE decoders give black images: fp32 unless asked
    opset: int = 17
    coreml_target: str = "iOS16"  # Core ML minimum deployment target (iOS18: grouped-channel palettization)
    coreml_attention: str = "original"  # Core ML: diffusers' attention, or split_einsum for the Neural Engine
    # Core ML: the UNet in this many chunks run one after the other; None: as many as keep each under the Neural
    # Engine's 1 GB (any component), 1: never split
    coreml_chunks: int | None = None
    onnx_fusion: bool = False  # ONNX Runtime's transformer optimizer on the ONNX graphs (fp32; ONNX Runtime only)
    # heads per slice of the UNet's attention (exporters/attention_slicing.py): the graph computes the attention
    # matrices a slice at a time, so the largest (tokens^2 per head) never all exist at once. None: unsliced
    attention_slice: int | None = None
    tolerances: dict = field(default_factory=dict)  # component -> Tolerances, overriding the defaults

    def check(self) -> None:
        from ..backends import BACKENDS, exportable

        unknown = [b for b in self.backends if b not in exportable()]
        if unknown:
            raise EdgeLDMError(f"unknown backend(s) {', '.join(unknown)}", hint=f"choose from {', '.join(exportable())}")
        if not self.backends:
            raise EdgeLDMError("no backend to export to")
        if self.precision not in PRECISIONS:
            raise EdgeLDMError(f"--precision must be fp32 or fp16, got {self.precision!r}")
        if self.attention_slice is not None and self.attention_slice < 1:
            raise EdgeLDMError(f"--attention-slice must be a positive number of heads, got {self.attention_slice}")
        from .coreml_export import ATTENTION

        if self.coreml_attention not in ATTENTION:
            raise EdgeLDMError(f"--coreml-attention must be one of {', '.join(ATTENTION)}, got {self.coreml_attention!r}")
        if self.coreml_chunks is not None and self.coreml_chunks < 1:
            raise EdgeLDMError(f"--chunks must be a positive number of chunks, got {self.coreml_chunks}")
        if self.onnx_fusion and ("onnx" not in self.backends or self.precision != "fp32"):
            raise EdgeLDMError("--onnx-fusion fuses fp32 ONNX graphs for ONNX Runtime's CPU kernels",
                               hint="export with --backend onnx and --precision fp32")
        if self.opset < 17:
            raise EdgeLDMError(f"--opset must be at least 17, got {self.opset}")
        for name in self.backends:
            if BACKENDS[name].needs_static and not self.static:
                raise EdgeLDMError(f"the {name} backend needs fixed shapes (its graphs are exported static)",
                                   hint="add --static (ExportConfig(static=True))")


def component_ios(pipe, height: int, width: int) -> dict[str, ComponentIO]:
    """Every graph a bundle of ``pipe`` may hold, declared for ``height`` x ``width`` images: one per text encoder
    of the model's family (SDXL's two output every layer's hidden states: the UNet reads the penultimate), the
    UNet (with SDXL's added conditions), the VAE's decoder and encoder."""
    from ..families import family_of

    family = family_of(pipe)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    lh, lw = height // factor, width // factor
    seq = pipe.tokenizer.model_max_length
    encoders = {name: text_encoder_io(getattr(pipe, name).config, sequence_length=seq, component=name,
                                      projection=hasattr(getattr(pipe, name), "text_projection"),
                                      hidden_states=family.text_layer != -1)
                for name in family.text_encoders}
    return {
        **encoders,
        "unet": unet_io(pipe.unet.config, latent_height=lh, latent_width=lw, sequence_length=seq),
        "vae_decoder": vae_decoder_io(pipe.vae.config, latent_height=lh, latent_width=lw),
        "vae_encoder": vae_encoder_io(pipe.vae.config, height=height, width=width),
    }


def _validate(module, io: ComponentIO, graph: Path, backend: str, precision: str, tolerances, *,
              spatial_multiple: int, vocab_size: int) -> ValidationReport:
    import numpy as np
    import torch

    from ..runtimes.backends import open_session
    from .dummy_inputs import example_inputs, validation_dims
    from .validation import compare_outputs

    dims = io.dims if io.is_static else validation_dims(io, spatial_multiple=spatial_multiple)
    inputs = example_inputs(io, dims, seed=1, vocab_size=vocab_size)
    with torch.no_grad():
        ref = module(*[torch.from_numpy(inputs[n]) for n in io.input_names])
    reference = {name: t.float().numpy() for name, t in zip(io.output_names, ref)}
    session = open_session(backend, graph, io)
    candidate = session(**inputs)
    checks = compare_outputs(reference, candidate, tolerances)
    shapes = {k: list(np.shape(v)) for k, v in inputs.items()}
    return ValidationReport(io.component, backend, precision, shapes, tolerances, checks)


def _skipped_validation(io: ComponentIO, precision: str, tolerances, reason: str) -> dict:
    """A validation entry with no numbers: ``passed`` is None, not True, and the reason says why."""
    return {"passed": None, "skipped": reason, "input_shapes": {}, "tolerances": asdict(tolerances),
            "outputs": {name: {"max_abs_diff": None, "cosine": None, "psnr_db": None, "failures": []}
                        for name in io.output_names}}


def _source_digest(source, pipe) -> dict:
    from ..loading import resolve_source

    kind, path = resolve_source(source)
    if kind == "preset":
        return {"model": str(source), "kind": "preset", "digest": f"preset:{source}:seed0"}
    if kind == "single-file":
        return {"model": str(path.resolve()), "kind": kind, "digest": f"sha256:{sha256_file(path)}"}
    weights = sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    h = __import__("hashlib").sha256()
    for w in weights:
        h.update(str(w.relative_to(path)).encode())
        h.update(sha256_file(w).encode())
    # absolute: the torch reference session reloads the source from wherever the bundle is run
    model = str(path.resolve()) if kind == "folder" else str(source)
    return {"model": model, "kind": kind, "digest": f"sha256:{h.hexdigest()}"}


def _adapters(source) -> dict:
    from ..lineage import adapters_of

    adapters = adapters_of(source)
    return {"adapters": adapters} if adapters else {}


def _toolchain() -> dict:
    from importlib import metadata

    versions = {"edgeldm": __version__}
    for pkg in ("torch", "diffusers", "transformers", "onnx", "onnxruntime", "openvino", "coremltools"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return versions


def default_sampling(pipe, source=None) -> dict:
    """Steps and guidance a bundle samples with unless told otherwise (see ``lineage.sampling_defaults``)."""
    from ..lineage import sampling_defaults

    return sampling_defaults(source, bool(getattr(pipe.unet.config, "time_cond_proj_dim", None)))


def export_bundle(source, output: str | Path, config: ExportConfig = ExportConfig(), *, overwrite: bool = False,
                  allow_pickle: bool = False) -> dict:
    """Export ``source`` (zoo name or diffusers folder) to a bundle at ``output``; returns the manifest."""
    from ..arguments import check_image_size
    from ..components import INPAINT_CHANNELS, size_multiple, unet_downsampling, vae_scale_factor
    from ..families import family_of
    from ..loading import load_pipeline, resolve_source
    from .torch_modules import component_module

    config.check()
    # an inpainting model exports as any other: its UNet's sample input is 9 channels wide (unet_io reads them)
    pipe = load_pipeline(source, allow_pickle=allow_pickle, inpainting=True, families=FAMILIES)
    family = family_of(pipe)
    if config.attention_slice:
        from .attention_slicing import HeadSlicedAttnProcessor

        # same arithmetic, another schedule: the validation below compares the graph with the sliced module
        pipe.unet.set_attn_processor(HeadSlicedAttnProcessor(config.attention_slice))
    factor = vae_scale_factor(pipe.vae.config)
    height = config.height or pipe.unet.config.sample_size * factor
    width = config.width or pipe.unet.config.sample_size * factor
    multiple = size_multiple(pipe.vae.config, pipe.unet.config)
    check_image_size(height, width, multiple, why=f"VAE factor {factor} x the UNet's downsamplings")
    if pipe.unet.config.in_channels == INPAINT_CHANNELS and not config.vae_encoder:
        # an inpainting UNet takes the masked image's latents at every call: without the encoder it cannot run
        logger.info("an inpainting model: exporting its VAE encoder too (the masked image's latents)")
        config = replace(config, vae_encoder=True)
    if config.vae_encoder and not hasattr(pipe.vae, "quant_conv"):
        # optimum's bundle layout gives the encoder graph a posterior (mean, log-variance); AutoencoderTiny's encoder
        # returns the latents themselves, which no consumer of that layout would read right
        raise EdgeLDMError(f"--vae-encoder: {type(pipe.vae).__name__}'s encoder has no posterior to export",
                           hint="export without --vae-encoder (text-to-image needs only the decoder)")
    ios = component_ios(pipe, height, width)
    components = [*family.text_encoders, *COMPONENTS] + (["vae_encoder"] if config.vae_encoder else [])
    if config.static:
        # a model that samples without guidance by default (an LCM-LoRA student) calls its UNet with batch 1
        unet_batch = 1 if default_sampling(pipe, source)["guidance"] <= 1.0 else None
        ios = {k: v.static({"batch_size": unet_batch} if k == "unet" and unet_batch else None)
               for k, v in ios.items()}
    kind, path = resolve_source(source)
    protect = (path,) if path is not None and kind in ("folder", "single-file") else ()
    # the UNet's and VAE's example inputs have no token ids: any vocabulary serves them
    vocab = {c: getattr(pipe, c if c in family.text_encoders else "text_encoder").config.vocab_size
             for c in components}
    manifest_components: dict[str, dict] = {}
    failures: list[ValidationReport] = []

    with atomic_output_dir(output, overwrite=overwrite, protect=protect) as tmp, \
            tempfile.TemporaryDirectory(prefix="edgeldm-export-") as scratch, \
            progress_bar(total=len(components) * len(config.backends), desc="exporting", unit="graph") as bar:
        for comp in components:
            io = ios[comp]
            module = component_module(pipe, comp, io)
            precision = config.precision
            if comp.startswith("vae") and precision == "fp16" and not config.fp16_vae_decoder:
                precision = "fp32"  # fp16 VAEs overflow into black images
            tol = config.tolerances.get(comp, DEFAULT_TOLERANCES[precision])
            folder = tmp / comp
            entry = {"io": io.to_dict(), "precision": precision, "backends": {}}
            job = ExportJob(module, io, folder, Path(scratch), precision, vocab[comp], config.opset, config.coreml_target,
                            config.coreml_attention, config.coreml_chunks, config.onnx_fusion)
            for name in (b for b in BACKENDS if b in config.backends):  # registry order: ONNX before OpenVINO
                backend = BACKENDS[name]
                files = load(backend.exporter)(job)
                if skip := backend.skip_reason():
                    logger.info("%s %s: validation skipped (%s)", comp, name, skip)
                    validation = _skipped_validation(io, precision, tol, skip)
                else:
                    report = _validate(module, io, folder / backend.graph_in(folder), name, precision, tol,
                                       spatial_multiple=unet_downsampling(pipe.unet.config), vocab_size=vocab[comp])
                    logger.info("%s %s: %s", comp, name, ", ".join(
                        f"{o.name} max|diff| {o.max_abs_diff:.2e} PSNR {o.psnr_db:.1f} dB" for o in report.outputs))
                    if not report.passed:
                        failures.append(report)
                    validation = report.to_dict()
                entry["backends"][name] = {"files": digest_files(tmp, files), "validation": validation,
                                           **job.entries.pop(name, {})}
                bar.update(1)
            _write_component_config(pipe, comp, folder)
            manifest_components[comp] = entry
        if failures:
            messages = []
            for report in failures:
                try:
                    report.raise_if_failed()
                except ExportValidationError as exc:
                    messages.append(exc.message)
            raise ExportValidationError("export validation failed; no bundle was written:\n" + "\n".join(messages),
                                        hint="re-export with --precision fp32, or check the model for "
                                             "operations the backend does not support")
        pipe.scheduler.save_pretrained(str(tmp / "scheduler"))
        for tok in family.tokenizers:
            _write_tokenizer(getattr(pipe, tok), tmp / tok)
        import diffusers

        # pipe.config lacks the class and version keys (diffusers adds them on save); optimum's
        # ORTDiffusionPipeline / OVDiffusionPipeline pick the pipeline class from _class_name
        model_index = {"_class_name": type(pipe).__name__, "_diffusers_version": diffusers.__version__,
                       **dict(pipe.config)}
        for drop in ("safety_checker", "feature_extractor", "image_encoder"):
            model_index.pop(drop, None)
        (tmp / "model_index.json").write_text(json.dumps({k: v for k, v in model_index.items()
                                                          if not k.startswith("_") or k in ("_class_name",
                                                                                            "_diffusers_version")},
                                                         indent=2, default=list) + "\n")
        # what peer loaders (optimum's pipelines) open besides graphs and tokenizer: listed and digested too
        configs = [tmp / "model_index.json", *sorted((tmp / "scheduler").iterdir()),
                   *(tmp / comp / "config.json" for comp in components)]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "toolchain": _toolchain(),
            "source": {**_source_digest(source, pipe), **_adapters(source)},
            "recipe": {"stage": "export", "options": {**asdict(config), "tolerances": {
                k: asdict(v) for k, v in config.tolerances.items()}}},
            "pipeline": pipe.config["_class_name"] if "_class_name" in pipe.config else type(pipe).__name__,
            "family": family.name,
            # the pipeline's own switches that change what a client computes (SDXL's zero negative embedding)
            "pipeline_config": {k: v for k, v in dict(pipe.config).items() if k in PIPELINE_SWITCHES},
            "image": {"height": height, "width": width, "vae_scale_factor": factor, "size_multiple": multiple,
                      "latent_channels": pipe.vae.config.latent_channels,
                      "scaling_factor": pipe.vae.config.scaling_factor, "static": config.static},
            "defaults": default_sampling(pipe, source),
            "scheduler": {"class": type(pipe.scheduler).__name__, "config": dict(pipe.scheduler.config)},
            **{tok: {"folder": tok, "model_max_length": getattr(pipe, tok).model_max_length,
                     "pad_token_id": getattr(pipe, tok).pad_token_id,
                     "files": digest_files(tmp, sorted((tmp / tok).iterdir()))} for tok in family.tokenizers},
            "components": manifest_components,
            "files": digest_files(tmp, configs),
        }
        manifest["generation"] = generation_contract(manifest)
        write_manifest(tmp, manifest)
    return manifest


def _write_component_config(pipe, component: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if component.startswith("text_encoder"):
        getattr(pipe, component).config.to_json_file(str(folder / "config.json"))
    elif component == "unet":
        pipe.unet.save_config(str(folder))
    else:  # optimum keeps the VAE's config beside each VAE graph
        pipe.vae.save_config(str(folder))


def _write_tokenizer(tokenizer, folder: Path) -> None:
    """The slow tokenizer's files (for diffusers / optimum) plus ``tokenizer.json`` for the ``tokenizers``
    library, which is all the torch-free runtime needs."""
    from transformers import CLIPTokenizerFast

    tokenizer.save_pretrained(str(folder))
    fast = CLIPTokenizerFast.from_pretrained(str(folder))
    fast.backend_tokenizer.save(str(folder / "tokenizer.json"))

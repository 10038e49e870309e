"""Inputs and outputs of every exported component, declared as data.

Names follow optimum's exporters so optimum's ``ORTStableDiffusionPipeline`` / ``OVStableDiffusionPipeline``
can load an edgeldm bundle: ``text_encoder(input_ids) -> last_hidden_state, pooler_output``,
``unet(sample, timestep, encoder_hidden_states[, text_embeds, time_ids][, timestep_cond]) -> out_sample``,
SDXL's ``text_encoder_2(input_ids) -> text_embeds, last_hidden_state, hidden_states.0 … N``,
``vae_decoder(latent_sample) -> sample``, ``vae_encoder(sample) -> latent_parameters``.
A dimension is an int (fixed) or a string (symbolic, dynamic unless the export is static).
The same specs drive dummy inputs for export, validation shapes, the manifest and the runtime's
input checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64", …
    shape: tuple[Dim, ...]

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @staticmethod
    def from_dict(d: dict) -> "TensorSpec":
        return TensorSpec(d["name"], d["dtype"], tuple(d["shape"]))


@dataclass(frozen=True)
class ComponentIO:
    """What one exported graph takes and returns; ``dims`` gives example sizes for symbolic dims."""

    component: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: dict[str, int] = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def resolve(self, spec: TensorSpec, dims: dict[str, int] | None = None) -> tuple[int, ...]:
        """Concrete shape of ``spec`` for the given symbolic sizes (defaults: ``self.dims``)."""
        sizes = {**self.dims, **(dims or {})}
        return tuple(d if isinstance(d, int) else _eval_dim(d, sizes) for d in spec.shape)

    def static(self, dims: dict[str, int] | None = None) -> "ComponentIO":
        """The same I/O with every symbolic dimension fixed (what NPUs and Core ML need)."""
        sizes = {**self.dims, **(dims or {})}
        fix = lambda specs: tuple(replace(s, shape=self.resolve(s, sizes)) for s in specs)  # noqa: E731
        return replace(self, inputs=fix(self.inputs), outputs=fix(self.outputs), dims=sizes)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for t in (*self.inputs, *self.outputs) for d in t.shape)

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @staticmethod
    def from_dict(component: str, d: dict) -> "ComponentIO":
        return ComponentIO(component, tuple(map(TensorSpec.from_dict, d["inputs"])),
                           tuple(map(TensorSpec.from_dict, d["outputs"])))


def _eval_dim(expr: str, sizes: dict[str, int]) -> int:
    """Evaluate a symbolic dimension such as ``"latent_height * 8"`` (names, ints, * and / only)."""
    tokens = expr.replace("*", " * ").replace("/", " / ").split()
    value, op = None, None
    for tok in tokens:
        if tok in ("*", "/"):
            op = tok
            continue
        v = int(tok) if tok.isdigit() else sizes.get(tok)
        if v is None:
            raise KeyError(f"no size given for dimension {tok!r} (in {expr!r})")
        value = v if value is None else (value * v if op == "*" else value // v)
    return int(value)


#: SDXL's micro-conditioning: original size, crop top-left, target size, each (height, width)
TIME_IDS = 6


def added_condition_shapes(unet_config) -> dict[str, int]:
    """Widths of the added conditions a UNet takes besides the text states (``added_cond_kwargs``), from its
    config alone: SDXL's ``text_time`` embedding takes the pooled text embedding (``text_embeds``) and six
    ``time_ids``, each of those Fourier-embedded to ``addition_time_embed_dim`` and concatenated with it."""
    get = unet_config.get if isinstance(unet_config, dict) else lambda k, d=None: getattr(unet_config, k, d)
    if get("addition_embed_type") != "text_time":
        return {}
    pooled = get("projection_class_embeddings_input_dim") - TIME_IDS * get("addition_time_embed_dim")
    return {"text_embeds": pooled, "time_ids": TIME_IDS}


def micro_conditioning(height: int, width: int) -> list[int]:
    """SDXL's ``time_ids`` of a ``height`` x ``width`` image: original size, crop top-left (0, 0), target size —
    what diffusers' SDXL pipeline sends unless told other sizes (one row per batch entry)."""
    return [height, width, 0, 0, height, width]


def hidden_state_name(layer: int) -> str:
    """optimum's name for the hidden states after ``layer`` encoder layers (0: the embeddings)."""
    return f"hidden_states.{layer}"


def text_encoder_io(text_config, *, sequence_length: int = 77, component: str = "text_encoder",
                    projection: bool = False, hidden_states: bool = False) -> ComponentIO:
    """A CLIP text encoder's graph. ``projection``: a ``CLIPTextModelWithProjection`` (SDXL's second encoder),
    whose first output is the projected pooled embedding ``text_embeds``; ``hidden_states``: every layer's hidden
    states too (``hidden_states.0`` … ``hidden_states.N``), as optimum exports the encoders of pipelines that read
    a penultimate layer — optimum's pipelines index them, so the names and their number are its contract."""
    hidden = text_config.hidden_size
    states = ("batch_size", "sequence_length", hidden)
    if projection:
        outputs = [TensorSpec("text_embeds", "float32", ("batch_size", text_config.projection_dim)),
                   TensorSpec("last_hidden_state", "float32", states)]
    else:
        outputs = [TensorSpec("last_hidden_state", "float32", states),
                   TensorSpec("pooler_output", "float32", ("batch_size", hidden))]
    if hidden_states:
        outputs += [TensorSpec(hidden_state_name(i), "float32", states)
                    for i in range(text_config.num_hidden_layers + 1)]
    return ComponentIO(
        component,
        inputs=(TensorSpec("input_ids", "int64", ("batch_size", "sequence_length")),),
        outputs=tuple(outputs),
        dims={"batch_size": 1, "sequence_length": sequence_length},
    )


def unet_io(unet_config, *, latent_height: int, latent_width: int, sequence_length: int = 77) -> ComponentIO:
    c_in, c_out = unet_config.in_channels, unet_config.out_channels
    inputs = [
        TensorSpec("sample", "float32", ("batch_size", c_in, "latent_height", "latent_width")),
        # a scalar, as optimum exports it: one timestep for the whole (guidance-doubled) batch
        TensorSpec("timestep", "float32", ()),
        TensorSpec("encoder_hidden_states", "float32", ("batch_size", "sequence_length",
                                                        unet_config.cross_attention_dim)),
    ]
    # SDXL: the pooled text embedding and the micro-conditioning, in optimum's order (before timestep_cond)
    inputs += [TensorSpec(name, "float32", ("batch_size", width))
               for name, width in added_condition_shapes(unet_config).items()]
    if getattr(unet_config, "time_cond_proj_dim", None):
        inputs.append(TensorSpec("timestep_cond", "float32", ("batch_size", unet_config.time_cond_proj_dim)))
    return ComponentIO(
        "unet",
        inputs=tuple(inputs),
        outputs=(TensorSpec("out_sample", "float32", ("batch_size", c_out, "latent_height", "latent_width")),),
        # a static export fixes this: 2 for classifier-free guidance (uncond + cond in one call), 1 for a UNet
        # that embeds the guidance scale (LCM: one call per step)
        dims={"batch_size": 1 if getattr(unet_config, "time_cond_proj_dim", None) else 2,
              "latent_height": latent_height, "latent_width": latent_width, "sequence_length": sequence_length},
    )


def vae_decoder_io(vae_config, *, latent_height: int, latent_width: int) -> ComponentIO:
    factor = 2 ** (len(vae_config.block_out_channels) - 1)
    return ComponentIO(
        "vae_decoder",
        inputs=(TensorSpec("latent_sample", "float32", ("batch_size", vae_config.latent_channels, "latent_height",
                                                        "latent_width")),),
        outputs=(TensorSpec("sample", "float32", ("batch_size", vae_config.out_channels,
                                                  f"latent_height * {factor}", f"latent_width * {factor}")),),
        dims={"batch_size": 1, "latent_height": latent_height, "latent_width": latent_width},
    )


def vae_encoder_io(vae_config, *, height: int, width: int) -> ComponentIO:
    factor = 2 ** (len(vae_config.block_out_channels) - 1)
    return ComponentIO(
        "vae_encoder",
        inputs=(TensorSpec("sample", "float32", ("batch_size", vae_config.in_channels, "sample_height",
                                                 "sample_width")),),
        outputs=(TensorSpec("latent_parameters", "float32", ("batch_size", 2 * vae_config.latent_channels,
                                                             f"sample_height / {factor}", f"sample_width / {factor}")),),
        dims={"batch_size": 1, "sample_height": height, "sample_width": width},
    )


def io_to_json(ios: dict[str, ComponentIO]) -> dict:
    return {name: io.to_dict() for name, io in ios.items()}


__all__ = ["TensorSpec", "ComponentIO", "TIME_IDS", "added_condition_shapes", "micro_conditioning", "hidden_state_name",
           "text_encoder_io", "unet_io", "vae_decoder_io", "vae_encoder_io", "io_to_json"]

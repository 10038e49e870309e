"""A replacement VAE (``--vae PATH``, the ``sd-vae-ft-mse`` habit): a diffusers ``AutoencoderKL`` folder, a
model folder holding one in ``vae/``, or a single ``.safetensors`` file (original ``first_stage_model.*`` or bare
``encoder.*`` / ``decoder.*`` keys) converted by diffusers' ``AutoencoderKL.from_single_file`` with the model's
own VAE config, offline. The latent channels must be the model's."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .errors import CheckpointError, CheckpointNotFoundError

logger = logging.getLogger("edgeldm")


def _file_latent_channels(path: Path) -> int | None:
    from .single_file import read_shapes

    shapes = read_shapes(path)
    for prefix in ("first_stage_model.", "vae.", ""):
        shape = shapes.get(prefix + "decoder.conv_in.weight")
        if shape is not None:
            return shape[1]
    raise CheckpointError(f"{path}: no VAE decoder in this file (e.g. {', '.join(sorted(shapes)[:3]) or 'no keys'})",
                          hint="--vae takes an AutoencoderKL folder or a VAE .safetensors file")


def read_vae_source(path: str | Path) -> tuple[Path, int]:
    """(the ``.safetensors`` file or the ``AutoencoderKL`` folder at ``path``, its latent channels), read from
    headers and configs only, so a wrong ``--vae`` is refused before the model loads."""
    import json

    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointNotFoundError(f"VAE {path} does not exist")
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise CheckpointError(f"VAE file {path}: only .safetensors loads here (no pickles)")
        return path, _file_latent_channels(path)
    folder = path if (path / "config.json").is_file() else path / "vae"
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{path} holds no VAE (no config.json, no vae/config.json)")
    return folder, json.loads((folder / "config.json").read_text()).get("latent_channels")


def replace_vae(pipe, path: str | Path) -> dict:
    """Swap ``pipe.vae`` for the VAE at ``path`` (in place); returns what the lineage records."""
    from diffusers import AutoencoderKL

    from .manifest import sha256_file

    source, found = read_vae_source(path)
    want = pipe.vae.config.latent_channels
    if found != want:
        raise CheckpointError(f"VAE {source} has {found} latent channels; this model's UNet takes {want}",
                              hint="use a VAE of this model's family")
    if source.is_file():
        with tempfile.TemporaryDirectory() as config:
            pipe.vae.save_config(config)  # the model's own VAE architecture: offline, and the scaling it trained with
            vae = AutoencoderKL.from_single_file(str(source), config=config, local_files_only=True)
        digest = sha256_file(source)
    else:
        vae = AutoencoderKL.from_pretrained(str(source), local_files_only=True)
        weights = sorted(source.glob("*.safetensors"))
        digest = sha256_file(weights[0]) if weights else None
    vae.eval()
    pipe.register_modules(vae=vae)
    logger.info("VAE replaced by %s", path)
    return {"name": Path(path).name, "sha256": digest, "scaling_factor": vae.config.scaling_factor}

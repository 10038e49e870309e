"""Capture what each component really sees along the sampler's own trajectory, for quantization calibration.

The capture runs the bundle through the torch-free runtime — the very sampler, step count, guidance and
guidance embedding a deployed model uses (4 LCM timesteps for an LCM student, 25 steps of the bundle's
scheduler otherwise) — and records the inputs of every component call: ``input_ids`` of the text
encoder; ``sample``, ``timestep``, ``encoder_hidden_states`` (and ``timestep_cond``) of every UNet call;
``latent_sample`` of the VAE decoder. Records go to ``.npz`` shards of ``shard_size`` calls each, listed in
``calibration.json``; readers stream them one shard at a time, never the whole set.

Q-Diffusion's point is that activation ranges depend on the timestep; capturing the deployed sampler's
timesteps (and not, say, 25 DDIM steps for a 4-step LCM) calibrates the ranges the graph will meet.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import EdgeLDMError

logger = logging.getLogger("edgeldm")

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "edgeldm.calibration/1"
#: the graphs whose inputs a capture records (and every further text encoder a bundle has: SDXL's text_encoder_2)
CAPTURED = ("text_encoder", "unet", "vae_decoder")


def captured_components(components) -> tuple[str, ...]:
    """What a capture of a bundle with ``components`` records: its text encoders, UNet and VAE decoder."""
    return tuple(c for c in components if c in CAPTURED or c.startswith("text_encoder"))


@dataclass(frozen=True)
class CaptureConfig:
    samples: int = 32  # prompts (one image each)
    steps: int | None = None  # None: the bundle's default (4 for an LCM student)
    guidance: float | None = None  # None: the bundle's default
    seed: int = 0
    shard_size: int = 64  # component calls per .npz shard
    prompts_file: str | None = None


class _Recorder:
    """Wraps a session: passes every call through and hands its inputs to the shard writer."""

    def __init__(self, session, component: str, writer: "_ShardWriter"):
        self.session, self.component, self.writer = session, component, writer

    def __call__(self, **inputs):
        self.writer.add(self.component, {k: np.array(v, copy=True) for k, v in inputs.items()})
        return self.session(**inputs)


class _ShardWriter:
    def __init__(self, folder: Path, shard_size: int, components: tuple[str, ...]):
        self.folder, self.shard_size = folder, shard_size
        self.pending: dict[str, list[dict]] = {c: [] for c in components}
        self.shards: dict[str, list[dict]] = {c: [] for c in components}

    def add(self, component: str, inputs: dict) -> None:
        self.pending[component].append(inputs)
        if len(self.pending[component]) >= self.shard_size:
            self.flush(component)

    def flush(self, component: str) -> None:
        records = self.pending[component]
        if not records:
            return
        name = f"{component}-{len(self.shards[component]):04d}.npz"
        # one array per input name, calls stacked on a new leading axis (every call of a component has the
        # same shapes within one capture: one prompt per call, one image size)
        arrays = {k: np.stack([r[k] for r in records]) for k in records[0]}
        np.savez(self.folder / name, **arrays)
        self.shards[component].append({"file": name, "calls": len(records)})
        self.pending[component] = []


def capture(bundle: str | Path, out: str | Path, config: CaptureConfig = CaptureConfig(), *,
            backend: str = "onnx", overwrite: bool = False, verify: bool = True) -> dict:
    """Run ``bundle`` over calibration prompts and write the captured component inputs to ``out``."""
    from ..atomic import atomic_output_dir
    from ..progress import progress_bar
    from ..runtimes.text2image import Text2Image
    from .prompts import calibration_prompts

    if config.samples < 1 or config.shard_size < 1:
        raise EdgeLDMError(f"--calib-samples and the shard size must be >= 1, got {config.samples}, "
                           f"{config.shard_size}")
    t2i = Text2Image(bundle, backend=backend, verify=verify)
    source = t2i.manifest["source"]["model"]
    steps = config.steps or t2i.defaults["steps"]
    guidance = t2i.defaults["guidance"] if config.guidance is None else config.guidance
    prompts = calibration_prompts(str(Path(bundle)), config.samples, prompts_file=config.prompts_file,
                                  seed=config.seed + 3)
    with atomic_output_dir(out, overwrite=overwrite, protect=(bundle,)) as tmp:
        recorded = captured_components(t2i.sessions)
        writer = _ShardWriter(tmp, config.shard_size, recorded)
        for c in recorded:
            t2i.sessions[c] = _Recorder(t2i.sessions[c], c, writer)
        with progress_bar(total=len(prompts), desc="calibration capture", unit="img") as bar:
            for i, prompt in enumerate(prompts):
                t2i.decode(t2i.latents(prompt, steps=steps, guidance=guidance, seed=config.seed + i))
                bar.update(1)
        for c in recorded:
            writer.flush(c)
        index = {"format": CALIBRATION_FORMAT, "bundle": str(Path(bundle).resolve()), "source": source,
                 "sampler": type(t2i.sampler).__name__, "steps": steps, "guidance": guidance,
                 "guidance_embedding": t2i.guidance_embedding_dim is not None, "config": asdict(config),
                 "prompts": prompts, "components": writer.shards}
        (tmp / CALIBRATION_FILE).write_text(json.dumps(index, indent=2) + "\n")
    logger.info("captured %s", ", ".join(f"{sum(s['calls'] for s in v)} {k} calls" for k, v in writer.shards.items()))
    return index


class CalibrationSet:
    """A captured calibration folder; iterates one component's inputs call by call, one shard in memory."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        f = self.folder / CALIBRATION_FILE
        if not f.is_file():
            raise EdgeLDMError(f"{self.folder} is not a calibration capture (no {CALIBRATION_FILE})",
                               hint="create one with `edgeldm quantize ... --calib-samples N` or calibration.capture")
        self.index = json.loads(f.read_text())
        if self.index.get("format") != CALIBRATION_FORMAT:
            raise EdgeLDMError(f"{f}: unknown format {self.index.get('format')!r}")

    def calls(self, component: str) -> int:
        return sum(s["calls"] for s in self.index["components"].get(component, []))

    def iter_inputs(self, component: str, limit: int | None = None, *, start: int = 0,
                    count: int | None = None) -> Iterator[dict]:
        """Input dicts of ``component`` calls from ``start`` on (at most ``limit``).

        With ``count`` (the size of the range to draw from) and a ``limit`` below it, the calls are spread
        evenly over the range — every image and every timestep represented — instead of the first ``limit``,
        which would be the whole trajectory of the first few images only.
        """
        stride = max(1, count // limit) if count and limit else 1
        if component not in self.index["components"]:
            raise EdgeLDMError(f"no {component} inputs in {self.folder}",
                               hint=f"captured: {', '.join(self.index['components'])}")
        seen = 0
        for shard in self.index["components"][component]:
            if seen + shard["calls"] <= start:
                seen += shard["calls"]
                continue
            with np.load(self.folder / shard["file"]) as z:
                arrays = {k: z[k] for k in z.files}
            for i in range(shard["calls"]):
                offset = seen - start
                if offset >= 0 and offset % stride == 0:
                    if limit is not None and offset // stride >= limit:
                        return
                    yield {k: np.asarray(v[i]) for k, v in arrays.items()}  # 0-d arrays, not numpy scalars
                seen += 1

    def split(self, component: str, held_out: float = 0.25) -> tuple[list[int], list[int]]:
        """(calibration, held-out) call ranges as (start, count): the held-out tail validates, never calibrates."""
        n = self.calls(component)
        k = max(1, int(round(n * held_out))) if n > 1 else 0
        return [0, n - k], [n - k, k]


class OnnxCalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a capture (``get_next`` until None, ``rewind``)."""

    def __init__(self, calib: CalibrationSet, component: str, *, start: int = 0, limit: int | None = None,
                 count: int | None = None, rename: dict | None = None):
        self.calib, self.component, self.start, self.limit, self.count = calib, component, start, limit, count
        self.rename = rename or {}
        self.rewind()

    def get_next(self):
        item = next(self._it, None)
        return None if item is None else {self.rename.get(k, k): v for k, v in item.items()}

    def rewind(self) -> None:
        self._it = iter(self)

    def __iter__(self):
        return self.calib.iter_inputs(self.component, self.limit, start=self.start, count=self.count)


def nncf_dataset(calib: CalibrationSet, component: str, *, start: int = 0, limit: int | None = None,
                 count: int | None = None):
    """An ``nncf.Dataset`` streaming the captured inputs (re-iterable: NNCF passes over it more than once)."""
    import nncf

    return nncf.Dataset(OnnxCalibrationReader(calib, component, start=start, limit=limit, count=count))


def coreml_samples(calib: CalibrationSet, component: str, *, limit: int = 16) -> list[dict]:
    """Core ML's activation calibration takes a list of input dicts (small: it holds them all)."""
    (start, count), _ = calib.split(component)
    return list(calib.iter_inputs(component, limit, start=start, count=count))

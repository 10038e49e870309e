"""What ``edgeldm bench`` can time: one registry of target kinds, one small class per kind.

A target spec is ``[kind:]location``:

* ``BUNDLE`` (a folder with ``edgeldm.json``) — our torch-free runtime, ``--backend`` picks the graphs;
  ``onnx:BUNDLE`` / ``openvino:BUNDLE`` / ``coreml:BUNDLE`` name the backend in the spec (to put two
  backends side by side);
* ``MODEL`` (diffusers folder or zoo name) or ``diffusers:MODEL`` — the torch pipeline through diffusers;
* ``optimum-ort:BUNDLE`` / ``optimum-ov:BUNDLE`` — optimum's ONNX Runtime / optimum-intel's OpenVINO
  pipeline on our bundle, or on a folder optimum exported itself (``optimum-cli export openvino``), e.g.
  optimum-intel's own INT8 LCM pipeline (peers).

Every target produces the same figures: each component call is timed by wrapping the object the
pipeline calls (a backend session, a torch module's ``forward``, an optimum model's ``forward``), so a
figure means the same thing whoever made the image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends import get_backend, owners
from ..errors import EdgeLDMError
from ..families import FAMILIES
from ..runtimes.backends import device_options, precision_options

#: the components every target reports, in pipeline order (SDXL's text_encoder_2 counts as text encoder time)
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
TEXT_ENCODERS = tuple(dict.fromkeys(c for f in FAMILIES.values() for c in f.text_encoders))
#: the prompt every latency run uses (a tiny caption; any prompt costs the same)
BENCH_PROMPT = "a small red circle in the top left on a white background"


@dataclass(frozen=True)
class BenchConfig:
    steps: int = 25
    guidance: float = 7.5
    height: int | None = None  # None: the model's default size
    width: int | None = None
    repeat: int = 5
    warmup: int = 1
    threads: int | None = None  # None: the backend's default
    backend: str = "onnx"  # for bundle targets
    device: str | None = None  # None: the backend's CPU default
    quality_prompts: int | None = None  # None: 50 when the target derives from tiny, else off; 0: off
    verify: bool = True  # bundle targets: check the files against the manifest's digests before loading
    low_memory: bool = False  # bundle targets: Text2Image(low_memory=True)
    vae_tile: int | None = None  # bundle targets: the VAE tile in latent pixels (None: untiled / low-memory's)
    inference_precision: str | None = None  # bundle targets on a backend that offers it: OpenVINO's f32 / bf16 / f16


class ComponentTimer:
    """Seconds of every call per component since the last :meth:`reset`, and the resident peak during each
    component's calls (``peaks``, bytes; empty where the OS cannot reset its high-water mark)."""

    def __init__(self):
        from .timing import ResidentPeak

        self.calls: dict[str, list[float]] = {c: [] for c in COMPONENTS}
        self.peaks: dict[str, int] = {}
        self.memory = ResidentPeak()
        self.sync = lambda: None  # a torch target on an asynchronous device waits for its queue around calls

    def reset(self) -> None:
        for v in self.calls.values():
            v.clear()

    def wrap(self, component: str, fn):
        calls = self.calls.setdefault(component, [])  # the VAE encoder of an image-to-image bundle too

        def timed(*args, **kwargs):
            self.sync()
            self.memory.start_window()  # outside the timed span: the probe costs a system call or two
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                calls.append(time.perf_counter() - t0)
                peak = self.memory.window_peak()
                if peak is not None:
                    self.peaks[component] = max(self.peaks.get(component, 0), peak)

        return timed

    def wrap_forward(self, component: str, obj) -> None:
        """Time ``obj.forward`` (torch modules and optimum models both route ``__call__`` through it)."""
        obj.forward = self.wrap(component, obj.forward)


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (of ``path`` itself, a single-file checkpoint)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Target:
    kind = ""

    takes_memory_options = False  # --low-memory / --vae-tile: only the runtime has them

    def __init__(self, location: str, config: BenchConfig):
        self.location, self.config = location, config
        if (config.low_memory or config.vae_tile) and not self.takes_memory_options:
            raise EdgeLDMError(f"--low-memory and --vae-tile apply to bundle targets; {location} is timed through "
                               f"{self.kind}", hint="bench the exported bundle, or leave the memory options out")
        self.timer = ComponentTimer()

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.location}"

    def load(self) -> None:
        raise NotImplementedError

    def image(self, prompt: str, seed: int) -> np.ndarray:
        """One uint8 HWC image at the configured steps / guidance / size."""
        raise NotImplementedError

    def generate(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        return np.stack([self.image(p, s) for p, s in zip(prompts, seeds)])

    def size_bytes(self) -> int:
        raise NotImplementedError

    def source(self) -> str:
        """The model this target was made from (for lineage: does it derive from ``tiny``?)."""
        return self.location

    def describe(self) -> dict:
        return {"spec": self.label, "kind": self.kind, "location": self.location, "backend": self.backend,
                "device": self.device}

    backend = "torch"
    device = "cpu"


class RuntimeTarget(Target):
    """Our runtime (``edgeldm.runtimes.Text2Image``) on an exported bundle: no torch."""

    kind = "bundle"
    takes_memory_options = True

    def __init__(self, location, config, backend: str | None = None):
        super().__init__(location, config)
        self.backend = backend or config.backend
        self.description = get_backend(self.backend)  # edgeldm.backends: its device, threads, graph files
        self.device = config.device or self.description.default_device

    @property
    def label(self) -> str:
        precision = self.config.inference_precision
        return f"{self.backend}:{self.location}" + (f" ({precision})" if precision else "")

    def _session_options(self) -> dict:
        opts: dict = {}
        if self.config.threads and self.description.threads:
            opts["threads"] = self.config.threads
        opts.update(device_options(self.backend, self.config.device))
        opts.update(precision_options(self.backend, self.config.inference_precision))
        return opts

    def load(self) -> None:
        from ..runtimes.text2image import Text2Image

        self.t2i = Text2Image(self.location, backend=self.backend, verify=self.config.verify,
                              low_memory=self.config.low_memory, vae_tile=self.config.vae_tile,
                              **self._session_options())
        self.t2i.sessions = {c: self.timer.wrap(c, s) for c, s in self.t2i.sessions.items()}

    def image(self, prompt, seed):
        c = self.config
        return self.t2i.decode(self.t2i.latents(prompt, steps=c.steps, guidance=c.guidance, seed=seed,
                                                height=c.height, width=c.width))

    def size_bytes(self):
        # what a device ships: this backend's graphs plus the tokenizer and manifest, not the other backends
        has_graphs = bool(self.description.graph_file)
        total = 0
        for f in Path(self.location).rglob("*"):
            if not f.is_file():
                continue
            rel = f.relative_to(self.location)
            if has_graphs and len(rel.parts) > 1 and rel.parts[0] in (*COMPONENTS, *TEXT_ENCODERS,
                                                                                    "vae_encoder"):
                if rel.parts[0] == "vae_encoder" or self.backend not in owners(rel.parts[0], rel.as_posix()):
                    continue
            total += f.stat().st_size
        return total

    def source(self):
        from ..manifest import load_manifest

        return load_manifest(Path(self.location))["source"]["model"]


class DiffusersTarget(Target):
    """The torch pipeline through diffusers: what a user runs before edgeldm (and the ``diffusers:`` peer)."""

    kind = "diffusers"

    def __init__(self, location, config):
        super().__init__(location, config)
        self.device = config.device or "cpu"

    def load(self) -> None:
        import torch

        from ..devices import torch_device
        from ..loading import load_pipeline
        from .timing import synchronizer

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.pipe = load_pipeline(self.location, families=tuple(FAMILIES)).to(torch_device(self.device))
        self.pipe.set_progress_bar_config(disable=True)
        self.timer.sync = synchronizer(self.device)
        for c in TEXT_ENCODERS:
            if getattr(self.pipe, c, None) is not None:
                self.timer.wrap_forward(c, getattr(self.pipe, c))
        self.timer.wrap_forward("unet", self.pipe.unet)
        self.pipe.vae.decode = self.timer.wrap("vae_decoder", self.pipe.vae.decode)

    def image(self, prompt, seed):
        import torch

        c = self.config
        gen = torch.Generator("cpu").manual_seed(int(seed))
        with torch.inference_mode():
            out = self.pipe(prompt, num_inference_steps=c.steps, guidance_scale=c.guidance, generator=gen,
                            height=c.height, width=c.width, output_type="np").images[0]
        return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def size_bytes(self):
        from ..loading import resolve_source

        _, folder = resolve_source(self.location)
        if folder is None:  # an architecture preset lives in memory only: what its weights would take
            return sum(p.numel() * p.element_size() for m in (self.pipe.text_encoder, self.pipe.unet, self.pipe.vae)
                       for p in m.parameters())
        return folder_bytes(folder)


class _OptimumTarget(Target):
    """optimum's pipelines on our bundle; their own ``__call__`` with a seeded torch generator."""

    pipeline_class = ""

    def load(self) -> None:
        import torch

        from ..manifest import check_bundle, load_manifest

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        if self.is_bundle:  # optimum opens the bundle's files itself: the same trust rule first
            check_bundle(self.location, load_manifest(self.location), backends=[self.backend],
                         verify=self.config.verify)
        self.pipe = self._open()
        self.pipe.set_progress_bar_config(disable=True)
        for c in (*TEXT_ENCODERS[1:], *COMPONENTS):
            if getattr(self.pipe, c, None) is not None:
                self.timer.wrap_forward(c, getattr(self.pipe, c))

    def image(self, prompt, seed):
        import torch

        c = self.config
        gen = torch.Generator("cpu").manual_seed(int(seed))
        out = self.pipe(prompt, num_inference_steps=c.steps, guidance_scale=c.guidance, generator=gen,
                        height=c.height, width=c.width, output_type="np").images[0]
        return np.clip(np.asarray(out) * 255.0 + 0.5, 0, 255).astype(np.uint8)

    @property
    def is_bundle(self) -> bool:
        """Our bundle, or a folder optimum exported itself (``optimum-cli export``, ``save_pretrained``)."""
        return (Path(self.location) / "edgeldm.json").is_file()

    def size_bytes(self):
        if not self.is_bundle:
            return folder_bytes(Path(self.location))
        return RuntimeTarget(self.location, BenchConfig(backend=self.backend)).size_bytes()

    def source(self):
        if not self.is_bundle:
            return self.location
        return RuntimeTarget(self.location, BenchConfig(backend=self.backend)).source()


class OptimumORTTarget(_OptimumTarget):
    kind, backend = "optimum-ort", "onnx"

    def __init__(self, location, config):
        super().__init__(location, config)
        self.device = config.device or "CPUExecutionProvider"

    def _open(self):
        import onnxruntime as ort
        from optimum.onnxruntime import ORTDiffusionPipeline

        opts = ort.SessionOptions()
        if self.config.threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = self.config.threads, 1
        return ORTDiffusionPipeline.from_pretrained(self.location, session_options=opts, provider=self.device)


class OptimumOVTarget(_OptimumTarget):
    kind, backend = "optimum-ov", "openvino"

    def __init__(self, location, config):
        super().__init__(location, config)
        self.device = config.device or "CPU"

    def _open(self):
        from optimum.intel import OVDiffusionPipeline

        # the precision our OpenVINO session computes in (f32 unless --inference-precision): the CPU plugin would
        # otherwise pick bf16 where the CPU has it, and the two sides of a comparison must compute alike
        precision = precision_options("openvino", self.config.inference_precision).get("inference_precision")
        ov_config = {"INFERENCE_PRECISION_HINT": precision or "f32"}
        if self.config.threads:
            ov_config["INFERENCE_NUM_THREADS"] = self.config.threads
        return OVDiffusionPipeline.from_pretrained(self.location, device=self.device, ov_config=ov_config,
                                                   compile=True)


#: target kind (the prefix of a spec) -> class; plain paths are resolved by :func:`make_target`
TARGET_KINDS: dict[str, type[Target]] = {
    "bundle": RuntimeTarget,
    "diffusers": DiffusersTarget,
    "optimum-ort": OptimumORTTarget,
    "optimum-ov": OptimumOVTarget,
}


def parse_spec(spec: str) -> tuple[str, str | None, str]:
    """``[kind:]location`` -> (kind, runtime backend or None, location); without a kind, a folder with
    ``edgeldm.json`` is a bundle, anything else a model for diffusers."""
    from ..backends import graph_backends

    kind, sep, location = spec.partition(":")
    if sep and kind in graph_backends():  # onnx:BUNDLE, openvino:BUNDLE, coreml:BUNDLE
        return "bundle", kind, location
    if not sep or kind not in TARGET_KINDS:
        return ("bundle" if (Path(spec) / "edgeldm.json").is_file() else "diffusers"), None, spec
    return kind, None, location


def make_target(spec: str, config: BenchConfig) -> Target:
    """``[kind:]location`` (see :func:`parse_spec`) -> a target."""
    kind, backend, location = parse_spec(spec)
    if kind.startswith("optimum-") and (Path(location) / "model_index.json").is_file():
        return TARGET_KINDS[kind](location, config)  # a pipeline optimum exported itself
    if kind != "diffusers" and not (Path(location) / "edgeldm.json").is_file():
        raise EdgeLDMError(f"{location} is not an edgeldm bundle (no edgeldm.json)",
                           hint="`edgeldm export MODEL -o BUNDLE` makes one; models are timed with diffusers:MODEL")
    if backend:
        return RuntimeTarget(location, config, backend=backend)
    return TARGET_KINDS[kind](location, config)

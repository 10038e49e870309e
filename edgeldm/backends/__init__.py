"""The deployment backends, each described once: graph files, exporter, runtime session, devices, schemes.

One file per backend (``onnxruntime.py``, ``openvino.py``, ``ort_mobile.py``, ``coreml.py``, ``executorch.py``, ``torch.py``) registers a
:class:`Backend`; the bundle writer, the manifest's trust rule, the runtime, the quantizer and the bench
harness find everything about a backend here. The description names its implementations by dotted path
(``"module:attribute"``), imported on use, so this package stays torch-free and below every layer that
implements a backend. A new backend is one more file (or a ``register_backend`` call in a plugin or a
test), nothing else.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import import_module

from ..errors import EdgeLDMError


@dataclass(frozen=True)
class Backend:
    name: str  # as on the command line and in the manifest: onnx, openvino, ort_mobile, coreml, torch
    session: str  # "module:Class" of the runtime session (runtimes/backends/*_session.py)
    graph_file: str | None = None  # the file a component folder holds its graph in (None: no graph of its own)
    #: the first part's name when a graph may come in parts run one after the other (Core ML chunks), else None
    first_part: str | None = None
    owns: tuple[str, ...] = ()  # name prefixes of the files of a component folder that belong to this graph
    exporter: str | None = None  # "module:function(job) -> files" writing the graph of a torch module
    schemes: str | None = None  # module whose import registers the backend's quantization schemes
    device_option: str | None = None  # the session option that takes --device
    default_device: str = ""  # what a result records as the device when none is given
    threads: bool = False  # the session takes a thread count
    needs_static: bool = False  # graphs are exported with fixed shapes only
    runs_on: tuple[str, ...] | None = None  # sys.platform values it predicts on (None: everywhere)
    runs_on_hint: str = ""
    #: session options of low-memory mode (``Text2Image(low_memory=True)``): what the backend offers to hold less
    low_memory_options: tuple[tuple[str, object], ...] = ()
    #: arithmetic precisions the session can be asked to compute in (``--inference-precision``; the first is its
    #: default, the one that keeps parity with the exported graph); () where the backend takes no such option
    inference_precisions: tuple[str, ...] = ()

    @property
    def graph_is_folder(self) -> bool:
        return bool(self.graph_file) and self.graph_file.endswith(".mlpackage")

    def graph_in(self, folder) -> str:
        """The name, inside a component folder, of the file its graph opens from: ``graph_file``, or the
        first part of a graph that was split (the session finds the rest beside it)."""
        from pathlib import Path

        folder = Path(folder)
        if self.first_part and not (folder / self.graph_file).exists() and (folder / self.first_part).exists():
            return self.first_part
        return self.graph_file

    def skip_reason(self) -> str | None:
        """Why its graphs cannot run on this machine (validations are then recorded as skipped)."""
        if self.runs_on is not None and sys.platform not in self.runs_on:
            return self.runs_on_hint or f"{self.name} predicts on {', '.join(self.runs_on)} only"
        return None

    def owns_file(self, name: str) -> bool:
        """Whether the file ``name`` (relative to a component folder) is one of this backend's graph files."""
        return bool(self.owns) and name.startswith(self.owns)


#: backend name -> description, in the order exports write them (ONNX first: OpenVINO converts from it)
BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    if backend.name in BACKENDS or not backend.name.isidentifier():
        raise ValueError(f"backend name {backend.name!r} is taken or not an identifier")
    BACKENDS[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    """Remove a backend registered at run time (tests, plugins)."""
    BACKENDS.pop(name, None)


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise EdgeLDMError(f"unknown backend {name!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def load(path: str):
    """``"module:attribute"`` -> the attribute (imports the module)."""
    module, _, attr = path.partition(":")
    return getattr(import_module(module), attr) if attr else import_module(module)


def graph_backends() -> list[str]:
    """Backends whose graphs a bundle can hold (the torch reference has none: it reloads the source model)."""
    return [b.name for b in BACKENDS.values() if b.graph_file]


def exportable() -> list[str]:
    return [b.name for b in BACKENDS.values() if b.exporter]


def with_schemes() -> list[str]:
    return [b.name for b in BACKENDS.values() if b.schemes]


def owners(component: str, rel: str) -> set[str]:
    """The backends whose graph the bundle file ``rel`` of ``component``'s folder belongs to, by its name."""
    if not rel.startswith(component + "/"):
        return set()
    name = rel[len(component) + 1:]
    return {b.name for b in BACKENDS.values() if b.owns_file(name)}


# each registers its backend; the order is the export order (OpenVINO converts the ONNX graph)
from . import onnxruntime  # noqa: E402,F401,I001
from . import openvino  # noqa: E402,F401
from . import ort_mobile  # noqa: E402,F401
from . import coreml  # noqa: E402,F401
from . import executorch  # noqa: E402,F401
from . import torch_reference  # noqa: E402,F401

"""ExecuTorch: a ``.pte`` program per component, lowered to the XNNPACK delegate (the CPU kernels phones run);
fixed shapes. Runs here through ExecuTorch's Python runtime (which takes torch tensors: this backend's session
needs torch, unlike the others — on a phone the same ``.pte`` runs in ExecuTorch's C++ runtime). Needs the
``executorch`` extra."""

from . import Backend, register_backend

EXECUTORCH = register_backend(Backend(
    name="executorch",
    graph_file="model.pte",
    owns=("model.pte",),
    session="edgeldm.runtimes.backends.executorch_session:ExecuTorchSession",
    exporter="edgeldm.exporters.executorch_export:export_for_bundle",
    schemes="edgeldm.compressor.quantize.executorch_schemes",
    default_device="XNNPACK",
    needs_static=True,
))

"""The torch reference: each component's own torch module, reloaded from the bundle's source model (no graph
in the bundle). For parity checks and debugging; it needs the compress extra."""

from . import Backend, register_backend

TORCH = register_backend(Backend(
    name="torch",
    session="edgeldm.exporters.torch_session:TorchSession",
    default_device="cpu",
    threads=True,
))

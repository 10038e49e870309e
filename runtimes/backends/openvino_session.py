"""OpenVINO session: device CPU / GPU / NPU / AUTO, optional static reshape, model cache, precision hint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._lazy import require
from .devices import check_ov_device
from .base import BackendSession


class OpenVINOSession(BackendSession):
    backend = "openvino"

    def __init__(self, model_path: Path, io, *, device: str = "CPU", threads: int | None = None,
                 static_shapes: dict[str, tuple[int, ...]] | None = None, cache_dir: str | None = None,
                 inference_precision: str | None = "f32"):
        super().__init__(model_path, io)
        ov = require("openvino")
        core = ov.Core()
        check_ov_device(core, device)
        model = core.read_model(str(self.model_path))
        if static_shapes:
            model.reshape({name: ov.PartialShape(list(shape)) for name, shape in static_shapes.items()})
        # OpenVINO's CPU plugin computes in bf16 wherever the CPU supports it, which moves outputs by ~1e-2;
        # f32 keeps parity with the exported graph unless the caller asks for speed ("bf16", "f16", None)
        config = {"INFERENCE_PRECISION_HINT": inference_precision} if inference_precision else {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir:
            config["CACHE_DIR"] = str(cache_dir)
        self.compiled = core.compile_model(model, device, config)
        # outputs by tensor name (kept from the ONNX graph / set at conversion), by position otherwise
        names_found = {n for out in self.compiled.outputs for n in out.get_names()}
        self._outputs = {name: (self.compiled.output(name) if name in names_found else self.compiled.outputs[i])
                         for i, name in enumerate(io.output_names)}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # one infer request per call: compiled models are shared, requests are not thread-safe
        request = self.compiled.create_infer_request()
        result = request.infer(inputs)
        return {name: np.array(result[port]) for name, port in self._outputs.items()}

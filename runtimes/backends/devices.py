"""Runtime device names a user types (ONNX Runtime execution providers, OpenVINO devices), checked before any
work: ONNX Runtime accepts a provider it cannot use and falls back to the CPU with only a warning — which would
put a CPU figure under a GPU's name in a benchmark record. (torch devices: ``edgeldm.devices``.)"""

from __future__ import annotations

from ...errors import EdgeLDMError


def check_ort_providers(ort, wanted: list[str]) -> None:
    """Every requested ONNX Runtime execution provider is in this onnxruntime build."""
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        raise EdgeLDMError(f"ONNX Runtime has no {missing[0]} here (available: {', '.join(available)})",
                           hint="CUDA and TensorRT need the onnxruntime-gpu package and a GPU; leave --device out "
                                "for the CPU")


def check_ort_session(session, wanted: list[str], what: str) -> None:
    """The session runs on the first requested provider, not on a fallback ONNX Runtime chose silently."""
    got = session.get_providers()
    if got and got[0] != wanted[0]:
        raise EdgeLDMError(f"ONNX Runtime could not start {wanted[0]} for {what} and fell back to {got[0]}",
                           hint="check the provider's libraries (CUDA / cuDNN versions) or leave --device out")


def check_ov_device(core, device: str) -> None:
    """An OpenVINO device (``GPU``, ``GPU.1``, ``NPU``…) that this machine's plugins can open; the virtual
    devices (AUTO, HETERO, MULTI, BATCH) pick among those themselves."""
    base = device.split(":")[0].split(".")[0]
    if base in ("AUTO", "HETERO", "MULTI", "BATCH"):
        return
    available = core.available_devices  # a plugin whose libraries are missing (GPU without OpenCL) is absent
    if not any(d == device or d.split(".")[0] == base for d in available):
        raise EdgeLDMError(f"OpenVINO has no {device} device here (available: {', '.join(available) or 'none'})",
                           hint="GPU needs Intel's OpenCL runtime, NPU its driver; leave --device out for the CPU")


def openvino_cpu_computes_bf16() -> bool:
    """OpenVINO's CPU plugin reports native bf16 arithmetic (AVX512_BF16, AMX): where ``--inference-precision
    bf16`` is worth suggesting (edgeldm pins f32 for parity unless told)."""
    from ..._lazy import require

    try:
        return "BF16" in require("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # no CPU plugin property on this build: say nothing
        return False


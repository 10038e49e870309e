"""Workarounds for the dependency set, applied once at ``import edgeldm`` (cheap: no heavy import happens here).

torchao 0.18 (which ``executorch==1.5.1`` pins, so the ``executorch`` extra brings it) removed tensor classes that
diffusers 0.35.2 and peft 0.17 import as soon as they see torchao installed: diffusers' torchao quantizer then
fails with a ``NameError`` on every model import (``logger`` undefined in its fallback), and peft's LoRA dispatch
with an ``ImportError`` on every adapter. edgeldm uses neither library's torchao integration (ExecuTorch's PT2E
flow calls torchao directly), so both are told torchao is absent, right after their import-utility module
executes — before anything reads it. Nothing changes where torchao is not installed.

OpenVINO's converter (``convert_model``, which NNCF and optimum-intel also go through) sends usage events to
Google Analytics unless the user opted out in ``~/intel``, from forked sender processes: on a machine without
network (CI, air-gapped build hosts) they wait for timeouts, and a SIGTERM arriving while one is forked left the
export hanging (found by terminating exports at random moments). Both OpenVINO and NNCF fall back to their own
telemetry stubs when the ``openvino_telemetry`` package is absent; edgeldm makes it look absent in its own
process (nothing is written to the user's opt-in file) unless ``EDGELDM_OPENVINO_TELEMETRY=1``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

#: set to 1 to let OpenVINO's tools send their usage telemetry from edgeldm's processes
OPENVINO_TELEMETRY_ENV = "EDGELDM_OPENVINO_TELEMETRY"


def _no_torchao_in_diffusers(module) -> None:
    module._torchao_available = False


def _no_torchao_in_peft(module) -> None:
    module.is_torchao_available = lambda: False  # modules bind it by name when they import it, after this


#: module -> what to change in it once it has executed
_PATCHES = {"diffusers.utils.import_utils": _no_torchao_in_diffusers, "peft.import_utils": _no_torchao_in_peft}


class _WithoutTorchao(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


def _no_openvino_telemetry() -> None:
    if os.environ.get(OPENVINO_TELEMETRY_ENV) == "1" or "openvino_telemetry" in sys.modules:
        return  # asked for, or already imported by the caller before edgeldm: theirs to decide
    sys.modules["openvino_telemetry"] = None  # `import openvino_telemetry` raises ImportError: the stubs' path


def install() -> None:
    _no_openvino_telemetry()
    if importlib.util.find_spec("torchao") is None:
        return
    for name, patch in _PATCHES.items():
        if name in sys.modules:  # imported before edgeldm: patch it in place
            patch(sys.modules[name])
    if not any(isinstance(f, _WithoutTorchao) for f in sys.meta_path):
        sys.meta_path.insert(0, _WithoutTorchao())

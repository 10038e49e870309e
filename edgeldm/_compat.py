"""Workarounds for the dependency set, applied once at ``import edgeldm`` (cheap: no heavy import happens here).

diffusers 0.35.2 and torchao 0.18 (which ``executorch==1.5.1`` pins, so the ``executorch`` extra brings it):
diffusers sees torchao installed, imports its torchao quantizer with every model class, and that module fails
on torchao 0.18's missing tensor classes with a ``NameError`` (``logger`` undefined in its fallback), so
``from diffusers import UNet2DConditionModel`` dies. edgeldm never uses diffusers' torchao quantization, so
diffusers is told torchao is absent: its availability flag is cleared right after ``diffusers.utils.import_utils``
executes — before anything reads it. Nothing changes where torchao is not installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

_TARGET = "diffusers.utils.import_utils"


class _DiffusersWithoutTorchao(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module._torchao_available = False

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if _TARGET in sys.modules:  # diffusers came first: clear the flag directly (its quantizers may be imported)
        sys.modules[_TARGET]._torchao_available = False
        return
    if importlib.util.find_spec("torchao") is not None and \
            not any(isinstance(f, _DiffusersWithoutTorchao) for f in sys.meta_path):
        sys.meta_path.insert(0, _DiffusersWithoutTorchao())

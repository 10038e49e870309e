"""The library API: one function per stage, each owning its whole lifecycle.

``convert``, ``prune``, ``finetune``, ``distill``, ``distill_vae``, ``export``, ``quantize``, ``evaluate``,
``bench`` and ``compress`` take their input, their output path and their options dataclass (keyword options work as a
shortcut: ``export("tiny", "bundle", static=True)``). Each checks its input and output before any work,
refuses an existing output unless ``overwrite=True``, writes atomically with its lineage, resumes from its
work folder and removes it when done, and returns a :class:`StageResult` whose ``metrics`` are what a recipe
gate reads. The modules import torch only inside the functions.
"""

from __future__ import annotations

#: public name -> the module of this package that defines it (``edgeldm.<name>`` reads this table, so that the
#: modules keep their own names: ``edgeldm.stages.prune`` is the module, ``edgeldm.prune`` the function)
API = {
    "prune": "prune", "score_operators": "prune", "PruneOptions": "prune",
    "finetune": "finetune", "FinetuneOptions": "finetune",
    "distill": "distill", "DistillOptions": "distill",
    "distill_vae": "distill_vae", "DistillVaeOptions": "distill_vae",
    "export": "export", "ExportOptions": "export",
    "quantize": "quantize", "QuantizeOptions": "quantize",
    "evaluate": "evaluate", "EvaluateOptions": "evaluate",
    "bench": "bench", "BenchOptions": "bench",
    "convert": "convert", "ConvertOptions": "convert",
    "compress": "runner",
    "StageResult": "common",
}


def api(name: str):
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{API[name]}"), name)

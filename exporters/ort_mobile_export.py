"""ONNX graph -> ONNX Runtime's mobile format: ``model.ort`` plus the operator and type list of a reduced build.

onnxruntime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``, the "Fixed" optimisation style
that ONNX Runtime Mobile's docs recommend: the graph optimisations are applied once and saved) writes the
flatbuffer graph and ``model.required_operators_and_types.config``, the file a minimal build takes
(``build.sh --minimal_build --include_ops_by_config``; one config for a whole bundle:
``python -m onnxruntime.tools.create_reduced_build_config --enable_type_reduction BUNDLE all.config``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import tempfile
from pathlib import Path

from .._lazy import require
from ..errors import EdgeLDMError

ORT_GRAPH = "model.ort"
ORT_CONFIG = "model.required_operators_and_types.config"


def export_ort_mobile(onnx_graph: Path, folder: Path) -> list[Path]:
    """Convert ``onnx_graph`` (with its external data, if any) into ``folder``; returns the two files."""
    require("onnxruntime")
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    if any(p.name.startswith(onnx_graph.name + "_") or p.suffix == ".onnx_data" for p in onnx_graph.parent.iterdir()):
        raise EdgeLDMError(f"{onnx_graph.parent.name}: the graph is over protobuf's 2 GB (external data); the ORT "
                           "format holds at most 2 GB per graph",
                           hint="export with --precision fp16, or quantize the ONNX bundle first")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".ort-") as tmp:
        src = Path(tmp) / "in" / "model.onnx"
        src.parent.mkdir()
        shutil.copyfile(onnx_graph, src)
        out = Path(tmp) / "out"
        log = io.StringIO()  # the converter prints (and logs) its progress; edgeldm's own bar covers it
        quiet = logging.getLogger("ort_format_model.utils")
        level, quiet.level = quiet.level, logging.WARNING
        with contextlib.redirect_stdout(log), contextlib.ExitStack() as restore:
            restore.callback(quiet.setLevel, level)
            convert_onnx_models_to_ort(src, output_dir=out, optimization_styles=[OptimizationStyle.Fixed],
                                       enable_type_reduction=True)
        if not (out / ORT_GRAPH).is_file():
            raise EdgeLDMError(f"onnxruntime's converter wrote no {ORT_GRAPH} for {onnx_graph.parent.name}:\n"
                               f"{log.getvalue()[-2000:]}")
        shutil.move(str(out / ORT_GRAPH), folder / ORT_GRAPH)
        # the converter names the models by absolute path in a comment: name them inside the bundle instead
        text = (out / ORT_CONFIG).read_text()
        text = re.sub(r"^# - .*$", f"# - {folder.name}/{ORT_GRAPH}", text, flags=re.MULTILINE)
        (folder / ORT_CONFIG).write_text(text)
    return [folder / ORT_GRAPH, folder / ORT_CONFIG]


def export_for_bundle(job) -> list[Path]:
    """The ``ort_mobile`` backend's exporter (``edgeldm.backends.ort_mobile``): converts the component's ONNX
    graph."""
    return export_ort_mobile(job.onnx_graph(), job.folder)

"""The fixed top-level layout maps onto one import package through setuptools package-dir."""

import importlib
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("subpackage,folder", [
    ("edgeldm.compressor", "compressor"),
    ("edgeldm.exporters", "exporters"),
    ("edgeldm.runtimes", "runtimes"),
    ("edgeldm.calibration", "calibration"),
    ("edgeldm.benchmarks", "benchmarks"),
    ("edgeldm", "edgeldm"),
])
def test_subpackage_lives_in_its_top_level_folder(subpackage, folder):
    module = importlib.import_module(subpackage)
    assert Path(module.__file__).resolve().parent == ROOT / folder


def test_console_script_reports_version():
    import edgeldm

    proc = subprocess.run(["edgeldm", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"edgeldm {edgeldm.__version__}"


def test_extras_have_the_fixed_names_and_pin_torch():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"onnx", "openvino", "coreml", "compress", "all", "test"} <= set(extras)
    assert "torch==2.13.0" in extras["compress"]
    assert not any(dep.split("=")[0].split(">")[0].strip() in ("torch", "diffusers", "transformers")
                   for dep in project["dependencies"])

"""The import contracts of pyproject.toml hold (import-linter), on the package as it installs.

The source folders map to subpackages of ``edgeldm`` (``compressor/`` is ``edgeldm.compressor``), which an
editable install resolves through an import hook that import-linter's graph builder cannot follow; so the
test lays the sources out as a regular install would (from ``[tool.setuptools] package-dir``) and lints that.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lay_out(dst: Path) -> None:
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, src in dirs.items():
        target = dst.joinpath(*package.split("."))
        for f in (ROOT / src).rglob("*.py"):
            out = target / f.relative_to(ROOT / src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out)


def _lint(tmp_path: Path, config: Path) -> subprocess.CompletedProcess:
    layout = tmp_path / "layout"
    _lay_out(layout)
    return _run_lint(layout, config)


def _run_lint(layout: Path, config: Path) -> subprocess.CompletedProcess:
    """``lint-imports CONFIG`` with this interpreter, on ``layout`` only (not the editable install)."""
    code = "import sys, importlinter.cli; sys.exit(importlinter.cli.lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, str(config), "--no-cache"], cwd=layout, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(layout), "PATH": "/usr/bin:/bin"})


def test_the_import_contracts_hold(tmp_path):
    proc = _lint(tmp_path, ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 kept, 0 broken" in proc.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The check can fail: the same contracts over a layout in which the runtime imports torch."""
    proc = _lint(tmp_path, ROOT / "pyproject.toml")
    assert proc.returncode == 0
    sampler = tmp_path / "layout" / "edgeldm" / "runtimes" / "samplers" / "base.py"
    sampler.write_text(sampler.read_text() + "\n\ndef _bad():\n    import torch  # noqa\n")
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    proc = _run_lint(tmp_path / "layout", config)
    assert proc.returncode != 0
    assert "the runtimes never import torch-side packages" in proc.stdout and "BROKEN" in proc.stdout

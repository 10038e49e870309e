"""Shared fixtures: tiny seeded components, built once per session (diffusers' get_dummy_components idea)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_random_pipe():
    from edgeldm.zoo import build_preset

    return build_preset("tiny-random", seed=0)


@pytest.fixture(scope="session")
def tiny_random_dir(tmp_path_factory, tiny_random_pipe) -> Path:
    """tiny-random saved as a standard diffusers folder (read-only by convention: copy before editing)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny-random"
    tiny_random_pipe.save_pretrained(str(path), safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_random_scores(tmp_path_factory) -> Path:
    """One LD-Pruner score cache (`prune --cache`) for the tests that prune tiny-random at the cheap settings
    `--samples 4 --steps 2 --latency-repeat 0`: its ~44 candidates are scored once per session, not per test
    (the cache is keyed by the weights, settings and prompts, so a test with other settings scores afresh)."""
    return tmp_path_factory.mktemp("scores")


@pytest.fixture
def checkpoint_copy(tiny_random_dir, tmp_path) -> Path:
    """A private copy of the tiny-random folder that a test may damage."""
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_random_dir, dst)
    return dst


def tree_digest(path: Path) -> str:
    """SHA-256 over every file's relative path and bytes: proves a folder was not written to."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def tiny_random_bundle(tmp_path_factory) -> Path:
    """tiny-random exported to ONNX + OpenVINO (read-only by convention: copy before editing)."""
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    path = tmp_path_factory.mktemp("bundle") / "tiny-random"
    export_bundle("tiny-random", path, ExportConfig(backends=("onnx", "openvino")))
    return path


@pytest.fixture(scope="session")
def tiny_random_coreml_bundle(tmp_path_factory) -> Path:
    """tiny-random exported static to ONNX + Core ML (read-only by convention: copy before editing)."""
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    path = tmp_path_factory.mktemp("coreml") / "tiny-random"
    export_bundle("tiny-random", path, ExportConfig(backends=("onnx", "coreml"), static=True))
    return path

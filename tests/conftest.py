"""Shared fixtures: tiny seeded components, built once per session (diffusers' get_dummy_components idea)."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeldm  # noqa: F401  (first: edgeldm._compat must precede any diffusers import of a test module)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one thread each beats two threads fighting over the other's core (tiny models
    # parallelise badly inside an op); subprocesses of the CLI tests inherit it
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


#: the files that take longest (seconds of test time on 2 busy cores, `--durations`, 2026-12-07), heaviest first
HEAVY_FILES = ("test_quantize.py", "test_prune.py", "test_distill.py", "test_single_file.py", "test_executorch.py",
               "test_compress.py", "test_python_api.py", "test_coreml_chunks.py", "test_coreml.py", "test_export.py",
               "test_laptop_speed.py", "test_sdxl_compress.py", "test_bench.py", "test_vae_distill.py")


def pytest_collection_modifyitems(session, config, items):
    """Longest files first. Under ``--dist loadfile`` a file runs whole on one worker, in collection order: a long
    file collected last (alphabetical order put test_vae_distill and test_sdxl_* there) kept one core busy while
    the other had finished. The sort is stable, so tests keep their order inside a file, and deterministic, as
    xdist needs every worker to collect the same order."""
    rank = {name: i for i, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
def tiny_random_lcm(tmp_path_factory, tiny_random_pipe):
    """An LCM-shaped tiny-random (a seeded UNet with a guidance embedding, LCMScheduler): (pipeline, its diffusers
    folder; read-only by convention)."""
    import torch
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel

    p = tiny_random_pipe
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(p.unet.config, time_cond_proj_dim=32)
    pipe = LatentConsistencyModelPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=unet,
                                          scheduler=LCMScheduler.from_config(p.scheduler.config), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    folder = tmp_path_factory.mktemp("lcm") / "src"
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return pipe, folder


@pytest.fixture(scope="session")
def encoder_bundle(tmp_path_factory, tiny_random_dir) -> Path:
    """tiny-random exported to ONNX + OpenVINO with its VAE encoder (image-to-image, tiled encode)."""
    import edgeldm

    out = tmp_path_factory.mktemp("img2img") / "bundle"
    edgeldm.export(tiny_random_dir, out, backend=("onnx", "openvino"), vae_encoder=True)
    return out


@pytest.fixture(scope="session")
def tiny_random_coreml_bundle(tmp_path_factory) -> Path:
    """tiny-random exported static to ONNX + Core ML (read-only by convention: copy before editing)."""
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    path = tmp_path_factory.mktemp("coreml") / "tiny-random"
    export_bundle("tiny-random", path, ExportConfig(backends=("onnx", "coreml"), static=True))
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """The embedded model tiny exported to ONNX (read-only by convention: copy before editing)."""
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("tiny-bundle") / "tiny"
    export_bundle("tiny", out, ExportConfig(backends=("onnx",)))
    return out


#: a path no user can write to, root included (sysfs refuses new files): outputs that cannot be written
UNWRITABLE = Path("/sys/edgeldm-test-output")


def run_on_tmpfs(tmp_path: Path, options: str, argv: list[str], *, timeout: int = 300):
    """Run ``edgeldm ARGV`` with a fresh tmpfs mounted (``options``, e.g. "ro" or "size=256k") at
    ``tmp_path/mnt``, in a mount namespace of its own (``unshare``; unprivileged users get one mapped to root):
    a real read-only or full file system, not a mock. Returns (exit code, stderr, names left in the mount)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    listing = tmp_path / "listing.txt"
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "edgeldm", *argv])
    script = (f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} || exit 99; {command}; rc=$?; "
              f"ls -A {shlex.quote(str(mount))} > {shlex.quote(str(listing))}; exit $rc")
    flags = "-m" if os.geteuid() == 0 else "-rm"
    proc = subprocess.run(["unshare", flags, "sh", "-c", script], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode != 99, f"could not mount a tmpfs ({options}) in a mount namespace: {proc.stderr}"
    return proc.returncode, proc.stderr, listing.read_text().split()

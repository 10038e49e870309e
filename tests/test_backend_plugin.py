"""A backend is one description: one defined entirely in this file (ONNX Runtime again, under another name)
exports, runs and benches a tiny-random bundle with no other file changed."""

import json

import numpy as np
import pytest

import edgeldm
from edgeldm.backends import BACKENDS, Backend, register_backend, unregister_backend

NAME = "onnxagain"


@pytest.fixture(scope="module")
def onnx_again():
    backend = register_backend(Backend(
        name=NAME, graph_file="model.onnx", owns=("model.onnx",),
        session="edgeldm.runtimes.backends.onnxruntime_session:OnnxRuntimeSession",
        exporter="edgeldm.exporters.onnx_export:export_for_bundle",
        device_option="providers", default_device="CPUExecutionProvider", threads=True))
    yield backend
    unregister_backend(NAME)


@pytest.fixture(scope="module")
def bundles(onnx_again, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugin")
    mine = edgeldm.export("tiny-random", tmp / "mine", backend=(NAME,))
    onnx = edgeldm.export("tiny-random", tmp / "onnx", backend=("onnx",))
    return mine.output, onnx.output


def test_the_bundle_lists_the_new_backend_and_passes_verification(bundles):
    from edgeldm.manifest import check_bundle, load_manifest

    mine, _ = bundles
    manifest = json.loads((mine / "edgeldm.json").read_text())
    assert {b for c in manifest["components"].values() for b in c["backends"]} == {NAME}
    assert all(c["backends"][NAME]["validation"]["passed"] for c in manifest["components"].values())
    check_bundle(mine, load_manifest(mine), backends=[NAME], verify=True)  # the trust rule knows its files by the description


def test_the_runtime_runs_it_and_draws_what_onnx_draws(bundles):
    from edgeldm.runtimes.text2image import Text2Image

    mine, onnx = bundles
    a = np.asarray(Text2Image(mine, backend=NAME)("a red circle", steps=2, seed=3))
    b = np.asarray(Text2Image(onnx, backend="onnx")("a red circle", steps=2, seed=3))
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_bench_times_it_in_its_own_process(bundles):
    mine, _ = bundles
    result = edgeldm.bench(f"{NAME}:{mine}", repeat=1, warmup=0, quality_prompts=0)
    target = result.details["target"]
    # the child process knew the backend (the parent's registry travels with it) and its default device
    assert (target["backend"], target["device"]) == (NAME, "CPUExecutionProvider")
    assert result.metrics["image_latency"] > 0 and result.metrics["unet_calls_per_image"] > 0
    assert NAME in BACKENDS

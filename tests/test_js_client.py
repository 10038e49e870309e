"""The reference JavaScript client (runtimes/js, onnxruntime-node): it reads nothing but the bundle and must make
the Python runtime's image for the same seed — noise, tokens, samplers and guidance rules as
docs/bundle-format.md states them."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeldm.benchmarks.quality import psnr

JS = Path(__file__).resolve().parents[1] / "runtimes" / "js"
CLI = JS / "bin" / "edgeldm-js.js"


@pytest.fixture(scope="module")
def node() -> str:
    """node, with the client's dependencies installed from its lock file (onnxruntime-node's CPU build)."""
    exe = shutil.which("node")
    if exe is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the JavaScript client: run `sh runtimes/js/ensure-node.sh` "
                    "(Debian's nodejs and npm), as the README's test command does")
    if not (JS / "node_modules" / "onnxruntime-node").is_dir():
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL_CUDA": "skip"}
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, env=env, check=True, timeout=600,
                       capture_output=True)
    return exe


def js(node, *args, check=True):
    result = subprocess.run([node, str(CLI), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"edgeldm-js {args[0]} failed:\n{result.stderr}")
    return result


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))[None]


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3])
def test_the_noise_stream_is_the_pythons(node, seed):
    from edgeldm.runtimes.noise import PhiloxNormal

    ours = np.array(json.loads(js(node, "noise", seed, 1001).stdout), dtype=np.float32)
    np.testing.assert_array_equal(ours, PhiloxNormal(seed)((1001,)))


def test_the_tokens_are_the_pythons(node, tiny_bundle):
    from edgeldm.runtimes.tokenizer import PromptTokenizer

    texts = ["a large red circle in the center on a white background", "", "It's 3 BLUE squares, left!!",
             "café  naïve\tdéjà-vu", "x" * 5 + " " + " ".join(["triangle"] * 90)]  # the last is cut to 77
    ids = json.loads(js(node, "tokenize", tiny_bundle, *texts).stdout)
    np.testing.assert_array_equal(np.array(ids), PromptTokenizer(tiny_bundle / "tokenizer")(texts))


def _same_image(node, bundle, tmp_path, **kw):
    from edgeldm.runtimes.text2image import Text2Image

    prompt = "a small blue square in the top left on a white background"
    out = tmp_path / "js.png"
    args = ["run", bundle, "--prompt", prompt, "-o", out]
    for key, value in kw.items():
        args += [f"--{key}", value]
    js(node, *args)
    ref = Text2Image(bundle, backend="onnx")(prompt, **kw)
    return _pixels(out), np.asarray(ref)[None]


def test_the_client_makes_the_python_image_of_tiny(node, tiny_bundle, tmp_path):
    ours, ref = _same_image(node, tiny_bundle, tmp_path, seed=7, steps=4)  # DDIM, classifier-free guidance
    assert ours.shape == ref.shape == (1, 64, 64, 3)
    assert float(psnr(ours, ref)[0]) >= 40.0  # bit-exact here: same graphs, same float32 rounding


def test_the_client_follows_the_lcm_rules(node, tiny_random_lcm, tmp_path):
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    bundle = tmp_path / "lcm"
    export_bundle(str(tiny_random_lcm[1]), bundle, ExportConfig(backends=("onnx",)))
    ours, ref = _same_image(node, bundle, tmp_path, seed=3, steps=4, guidance=6.0)  # embedded guidance, re-noising
    assert float(psnr(ours, ref)[0]) >= 40.0


def test_the_client_follows_the_euler_rules(node, tiny_random_dir, tmp_path):
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    model = tmp_path / "euler-model"
    shutil.copytree(tiny_random_dir, model)
    config = model / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "EulerDiscreteScheduler"}))
    index = model / "model_index.json"  # diffusers picks the scheduler class here
    index.write_text(json.dumps({**json.loads(index.read_text()), "scheduler": ["diffusers", "EulerDiscreteScheduler"]}))
    bundle = tmp_path / "euler"
    export_bundle(str(model), bundle, ExportConfig(backends=("onnx",)))
    ours, ref = _same_image(node, bundle, tmp_path, seed=11, steps=5)
    assert float(psnr(ours, ref)[0]) >= 40.0


def test_the_client_refuses_an_altered_bundle_and_an_unknown_sampler(node, tiny_bundle, tmp_path):
    altered = tmp_path / "altered"
    shutil.copytree(tiny_bundle, altered)
    with open(altered / "unet" / "model.onnx", "ab") as f:
        f.write(b"\0")
    result = js(node, "run", altered, "--prompt", "x", "-o", tmp_path / "a.png", check=False)
    assert result.returncode == 1 and "unet/model.onnx" in result.stderr and "digest" in result.stderr
    assert not (tmp_path / "a.png").exists()

    manifest = json.loads((altered / "edgeldm.json").read_text())
    manifest["generation"]["sampler"]["name"] = "pndm"
    (altered / "edgeldm.json").write_text(json.dumps(manifest))
    result = js(node, "run", altered, "--prompt", "x", "--no-verify", "-o", tmp_path / "b.png", check=False)
    assert result.returncode == 1 and "sampler pndm" in result.stderr and "ddim, euler, lcm" in result.stderr


def test_the_client_refuses_a_bundle_with_two_text_encoders(node, tiny_bundle, tmp_path):
    """Format 4 states SDXL's second encoder and added conditions; this client wires one encoder and says so
    rather than draw an image from half the conditioning."""
    sdxl = tmp_path / "sdxl"
    shutil.copytree(tiny_bundle, sdxl)
    manifest = json.loads((sdxl / "edgeldm.json").read_text())
    text = manifest["generation"]["text"]
    text["encoders"] = [*text["encoders"], {**text["encoders"][0], "component": "text_encoder_2"}]
    text["added_conditions"] = {"time_ids": {"unet_input": "time_ids", "value": "…"}}
    manifest["family"] = "sdxl"
    (sdxl / "edgeldm.json").write_text(json.dumps(manifest))
    result = js(node, "run", sdxl, "--prompt", "x", "-o", tmp_path / "c.png", check=False)
    assert result.returncode == 1 and "sdxl bundle (2 text encoders" in result.stderr
    assert "Python runtime" in result.stderr and not (tmp_path / "c.png").exists()

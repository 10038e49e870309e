"""The torch-free runtime over an exported bundle: parity with diffusers, across backends, under threads."""

import json
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from edgeldm.benchmarks.quality import psnr
from edgeldm.errors import EdgeLDMError
from edgeldm.manifest import BundleError
from edgeldm.runtimes.text2image import Text2Image, guidance_scale_embedding
from edgeldm.runtimes.tokenizer import PromptTokenizer

PROMPT = "a small red circle in the top left on a white background"


@pytest.fixture(scope="module")
def onnx_t2i(tiny_random_bundle):
    return Text2Image(tiny_random_bundle, backend="onnx")


def _diffusers_image(pipe, noise, steps, guidance, prompt=PROMPT):
    out = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, latents=torch.from_numpy(noise),
               output_type="np").images[0]
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("steps,guidance", [(4, 7.5), (2, 1.0)])
def test_runtime_matches_the_diffusers_pipeline(onnx_t2i, tiny_random_pipe, steps, guidance):
    noise = np.random.default_rng(3).standard_normal((1, 4, 32, 32)).astype(np.float32)
    ours = onnx_t2i.decode(onnx_t2i.latents(PROMPT, steps=steps, guidance=guidance, initial_latents=noise))
    reference = _diffusers_image(tiny_random_pipe, noise, steps, guidance)
    assert psnr(ours[None], reference[None])[0] >= 40.0


def test_onnx_and_openvino_agree(tiny_random_bundle, onnx_t2i):
    ov = Text2Image(tiny_random_bundle, backend="openvino")
    a = np.asarray(onnx_t2i(PROMPT, steps=3, seed=5))
    b = np.asarray(ov(PROMPT, steps=3, seed=5))
    assert psnr(a[None], b[None])[0] >= 35.0


def test_torch_reference_backend_agrees(tiny_random_bundle, onnx_t2i):
    ref = Text2Image(tiny_random_bundle, backend="torch")
    a = np.asarray(onnx_t2i(PROMPT, steps=3, seed=2))
    b = np.asarray(ref(PROMPT, steps=3, seed=2))
    assert psnr(a[None], b[None])[0] >= 40.0


def test_same_seed_same_image_other_seed_other_image(onnx_t2i):
    a, b, c = (np.asarray(onnx_t2i(PROMPT, steps=2, seed=s)) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_four_threads_give_the_sequential_images(onnx_t2i):
    seeds = [0, 1, 2, 3]
    sequential = [np.asarray(onnx_t2i(PROMPT, steps=2, seed=s)) for s in seeds]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda s: np.asarray(onnx_t2i(PROMPT, steps=2, seed=s)), seeds))
    assert all(np.array_equal(a, b) for a, b in zip(sequential, threaded))


def test_session_outputs_never_alias_inputs(onnx_t2i):
    session = onnx_t2i.sessions["vae_decoder"]
    latents = np.zeros((1, 4, 32, 32), np.float32)
    out = session(latent_sample=latents)["sample"]
    assert not np.shares_memory(out, latents)


def test_session_checks_inputs_against_the_manifest(onnx_t2i):
    with pytest.raises(EdgeLDMError, match="missing input"):
        onnx_t2i.sessions["unet"](sample=np.zeros((1, 4, 32, 32), np.float32))
    with pytest.raises(EdgeLDMError, match="rank"):
        onnx_t2i.sessions["vae_decoder"](latent_sample=np.zeros((4, 32, 32), np.float32))


def test_tokenizer_matches_transformers_and_truncates_with_a_warning(tiny_random_bundle, tiny_random_pipe, caplog):
    tok = PromptTokenizer(tiny_random_bundle / "tokenizer")
    ref = tiny_random_pipe.tokenizer
    for prompt in [PROMPT, "", "top-left: a LITTLE red disc!!"]:
        expected = ref(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        assert tok([prompt])[0].tolist() == expected
    long = " ".join(["red circle"] * 60)
    import logging

    edgeldm_logger = logging.getLogger("edgeldm")  # the CLI stops propagation to the root logger
    edgeldm_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="edgeldm"):
            ids = tok([long])[0]
    finally:
        edgeldm_logger.removeHandler(caplog.handler)
    assert ids.tolist() == ref(long, padding="max_length", max_length=77, truncation=True).input_ids
    assert "longer than 77 tokens" in caplog.text


def test_guidance_embedding_matches_diffusers():
    from diffusers import LatentConsistencyModelPipeline

    w = torch.tensor([7.0])
    expected = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=32)
    # sin/cos of float32 arguments near 7000 (one ulp = 5e-4): agreement to float32 rounding of the argument
    np.testing.assert_allclose(guidance_scale_embedding(np.array([7.0]), 32), expected.numpy(), atol=2e-3)
    small = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, torch.tensor([0.004]), embedding_dim=32)
    np.testing.assert_allclose(guidance_scale_embedding(np.array([0.004]), 32), small.numpy(), atol=1e-6)


def _copy(bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle, dst)
    return dst


def test_altered_or_missing_graph_is_refused(tiny_random_bundle, tmp_path):
    bundle = _copy(tiny_random_bundle, tmp_path)
    graph = bundle / "unet" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-100])
    with pytest.raises(BundleError, match="unet/model.onnx was altered"):
        Text2Image(bundle, backend="onnx")
    graph.unlink()
    with pytest.raises(BundleError, match="unet/model.onnx is missing"):
        Text2Image(bundle, backend="onnx")
    Text2Image(bundle, backend="openvino")  # the other backend's files are intact


def test_bundle_errors(tiny_random_bundle, onnx_t2i, tmp_path):
    with pytest.raises(BundleError, match="edgeldm.json is missing"):
        Text2Image(tmp_path, backend="onnx")
    with pytest.raises(EdgeLDMError, match="unknown backend"):
        Text2Image(tiny_random_bundle, backend="tensorrt")
    with pytest.raises(EdgeLDMError, match="multiples of 4 for this model"):
        onnx_t2i(PROMPT, height=63, width=64, steps=1)
    bundle = _copy(tiny_random_bundle, tmp_path)
    manifest = json.loads((bundle / "edgeldm.json").read_text())
    for comp in manifest["components"].values():
        comp["backends"].pop("openvino")
    (bundle / "edgeldm.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no openvino graph"):
        Text2Image(bundle, backend="openvino")


def test_runtime_runs_where_torch_cannot_be_imported(tiny_random_bundle, tmp_path):
    out = tmp_path / "x.png"
    code = textwrap.dedent(f"""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "diffusers", "transformers"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, _Block())
        from edgeldm.cli import main
        rc = main(["--quiet", "run", {str(tiny_random_bundle)!r}, "--prompt", "a red circle", "--steps", "2",
                   "-o", {str(out)!r}])
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "transformers")]
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_an_execution_provider_that_is_missing_or_fell_back_is_an_error(tiny_random_bundle):
    import onnxruntime as ort

    from edgeldm.runtimes.backends.devices import check_ort_session

    # ONNX Runtime itself would only warn and run on the CPU: a benchmark would file a CPU figure as a GPU's
    with pytest.raises(EdgeLDMError, match="has no NoSuchExecutionProvider"):
        Text2Image(tiny_random_bundle, backend="onnx", providers=["NoSuchExecutionProvider"])
    cpu = ort.InferenceSession(str(next(tiny_random_bundle.glob("**/model.onnx"))),
                               providers=["CPUExecutionProvider"])
    check_ort_session(cpu, ["CPUExecutionProvider"], "unet")  # what was asked for: no error
    with pytest.raises(EdgeLDMError, match="could not start CUDAExecutionProvider .* to CPUExecutionProvider"):
        check_ort_session(cpu, ["CUDAExecutionProvider", "CPUExecutionProvider"], "unet")


def test_an_inference_precision_reaches_openvino_and_is_refused_elsewhere(tiny_random_bundle, tmp_path, capsys):
    """OpenVINO computes in f32 unless asked (parity with the exported graph); bf16 is a speed choice that keeps
    the image close (on a CPU without bf16, OpenVINO computes in f32 and the images are the same)."""
    import openvino as ov

    from edgeldm.cli import main
    from edgeldm.runtimes.backends import precision_options

    assert precision_options("openvino", None) == {} and precision_options("openvino", "bf16") == {
        "inference_precision": "bf16"}
    with pytest.raises(EdgeLDMError, match="onnx backend takes no --inference-precision"):
        precision_options("onnx", "bf16")
    with pytest.raises(EdgeLDMError, match="not 'int3'"):
        precision_options("openvino", "int3")
    fast = Text2Image(tiny_random_bundle, backend="openvino", **precision_options("openvino", "bf16"))
    asked = fast.sessions["unet"].compiled.get_property("INFERENCE_PRECISION_HINT")
    supported = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert asked == (ov.Type.bf16 if supported else ov.Type.f32)
    default = Text2Image(tiny_random_bundle, backend="openvino")
    assert default.sessions["unet"].compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    a = np.asarray(default(PROMPT, steps=3, seed=2))
    b = np.asarray(fast(PROMPT, steps=3, seed=2))
    assert psnr(a[None], b[None])[0] >= 35.0
    out = tmp_path / "x.png"
    assert main(["run", str(tiny_random_bundle), "--prompt", PROMPT, "--inference-precision", "bf16",
                 "-o", str(out)]) == 1  # the default backend is ONNX Runtime
    assert "takes no --inference-precision" in capsys.readouterr().err and not out.exists()
    # a CPU that computes bf16 natively gets a hint when it was not asked for, and no other does
    assert main(["run", str(tiny_random_bundle), "--prompt", PROMPT, "--backend", "openvino", "--steps", "1",
                 "-o", str(out)]) == 0
    assert ("--inference-precision bf16 made" in capsys.readouterr().err) == supported


def test_device_options_per_backend_and_unknown_devices(tiny_random_bundle, tmp_path, capsys):
    from edgeldm.cli import main
    from edgeldm.runtimes.backends.devices import check_ov_device
    from edgeldm.runtimes.backends import device_options

    assert device_options("onnx", None) == {}
    assert device_options("onnx", "CUDAExecutionProvider") == {"providers": ["CUDAExecutionProvider",
                                                                             "CPUExecutionProvider"]}
    assert device_options("openvino", "GPU") == {"device": "GPU"}
    assert device_options("coreml", "CPU_AND_NE") == {"compute_units": "CPU_AND_NE"}
    with pytest.raises(EdgeLDMError, match="torch backend takes no --device"):
        device_options("torch", "cuda")

    class Core:  # a machine whose GPU plugin cannot load (no OpenCL): OpenVINO lists only the CPU
        available_devices = ["CPU"]

    check_ov_device(Core(), "CPU")
    check_ov_device(Core(), "AUTO:GPU,CPU")  # the virtual device chooses among what exists
    with pytest.raises(EdgeLDMError, match="OpenVINO has no GPU.1 device here"):
        check_ov_device(Core(), "GPU.1")
    out = tmp_path / "x.png"
    assert main(["run", str(tiny_random_bundle), "--prompt", PROMPT, "--device", "NoSuchExecutionProvider",
                 "-o", str(out)]) != 0
    assert "has no NoSuchExecutionProvider" in capsys.readouterr().err and not out.exists()

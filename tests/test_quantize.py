"""Quantization: trajectory capture and its readers, every scheme on a tiny bundle (runs through the runtime,
validated and stamped), the PSNR gate, the sensitivity search, optimum loading quantized bundles."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgeldm.calibration.capture import CalibrationSet, CaptureConfig, OnnxCalibrationReader, capture
from edgeldm.cli import main
from edgeldm.compressor.quantize import QuantizationQualityError, QuantizeConfig, quantize_bundle
from edgeldm.compressor.quantize.schemes import QuantOptions
from edgeldm.compressor.quantize.sensitivity import block_groups, search
from edgeldm.errors import EdgeLDMError
from edgeldm.manifest import load_manifest, verify_files
from edgeldm.runtimes.text2image import Text2Image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CAPTURE = CaptureConfig(samples=4, steps=3, shard_size=5)


@pytest.fixture(scope="module")
def calib(tiny_random_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("calib") / "c"
    capture(tiny_random_bundle, out, CAPTURE)
    return CalibrationSet(out)


def test_capture_records_the_sampler_trajectory_in_shards(calib, tiny_random_bundle):
    idx = calib.index
    assert idx["steps"] == 3 and idx["sampler"] and len(idx["prompts"]) == 4
    # tiny-random samples with PNDM: 3 steps are 4 UNet calls (its warm-up takes an extra one), each call
    # carrying the guidance-doubled batch; shards of at most 5 calls
    assert calib.calls("unet") == 16 and calib.calls("text_encoder") == 4 and calib.calls("vae_decoder") == 4
    assert [s["calls"] for s in idx["components"]["unet"]] == [5, 5, 5, 1]
    calls = list(calib.iter_inputs("unet"))
    timesteps = [float(c["timestep"]) for c in calls]
    assert timesteps[:4] == timesteps[4:8] and len(set(timesteps[:4])) >= 3  # the same schedule per image
    assert calls[0]["timestep"].shape == () and calls[0]["sample"].shape[0] == 2
    (start, n), (hstart, hn) = calib.split("unet")
    assert (start, n, hstart, hn) == (0, 12, 12, 4)
    assert len(list(calib.iter_inputs("unet", 2, start=12))) == 2
    # a limit below the range spreads the draw over it: every image, every timestep
    spread = [float(c["timestep"]) for c in calib.iter_inputs("unet", 3, start=0, count=12)]
    assert spread == [timesteps[0], timesteps[4], timesteps[8]]
    reader = OnnxCalibrationReader(calib, "unet", start=0, limit=3)
    got = [reader.get_next() for _ in range(4)]
    assert got[3] is None and set(got[0]) == {"sample", "timestep", "encoder_hidden_states"}
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["sample"], got[0]["sample"])
    with pytest.raises(EdgeLDMError, match="not a calibration capture"):
        CalibrationSet(tiny_random_bundle)


@pytest.mark.parametrize("backend, scheme", [("onnx", "dynamic"), ("onnx", "qdq-static"), ("onnx", "int8-weights"),
                                             ("onnx", "int4-weights"), ("openvino", "int8-weights"), ("openvino", "int4-weights"),
                                             ("openvino", "hybrid"), ("openvino", "w8a8")])
def test_every_scheme_writes_a_validated_bundle_that_runs(tiny_random_bundle, calib, tmp_path, backend, scheme):
    out = tmp_path / "q"
    config = QuantizeConfig(backend=backend, scheme=scheme, calibration_dir=str(calib.folder), min_psnr=10.0,
                            image_prompts=1)
    manifest = quantize_bundle(tiny_random_bundle, out, config)
    q = manifest["quantization"]
    assert q["scheme"] == scheme and q["calibration"]["steps"] == 3
    for comp, entry in manifest["components"].items():
        assert list(entry["backends"]) == [backend]  # the other backend's graphs are gone
        if comp in q["components"]:
            parity = entry["backends"][backend]["quantization"]["parity"]
            assert parity["inputs"] >= 1 and parity["psnr_db"] >= 10.0 and -1 <= parity["cosine"] <= 1
    verify_files(out, load_manifest(out))  # digests were recomputed for the new graphs
    assert "psnr_db_mean" in q["image_parity"]
    image = Text2Image(out, backend=backend)("a red circle", steps=2)
    assert image.size == (64, 64)
    original = load_manifest(tiny_random_bundle)  # the input bundle is untouched
    assert "quantization" not in original and "openvino" in original["components"]["unet"]["backends"]


def test_the_qnn_scheme_wants_fixed_shapes_and_writes_16_bit_activations(tiny_random_bundle, calib, tmp_path):
    import onnx

    from edgeldm.errors import EdgeLDMError
    from edgeldm.exporters.bundle import ExportConfig, export_bundle

    refused = tmp_path / "refused"
    with pytest.raises(EdgeLDMError, match="needs fixed shapes") as info:
        quantize_bundle(tiny_random_bundle, refused, QuantizeConfig(backend="onnx", scheme="qnn-a16w8",
                                                                    calibration_dir=str(calib.folder)))
    assert "--static" in info.value.hint and not refused.exists()

    static = tmp_path / "static"
    export_bundle("tiny-random", static, ExportConfig(backends=("onnx",), static=True))
    out = tmp_path / "q"
    manifest = quantize_bundle(static, out, QuantizeConfig(backend="onnx", scheme="qnn-a16w8", min_psnr=30.0,
                                                           image_prompts=1, calibration=CaptureConfig(samples=2, steps=3),
                                                           options=QuantOptions(calib_samples=8)))
    assert manifest["quantization"]["components"] == ["unet"]  # the text encoder's causal mask stays float
    parity = manifest["components"]["unet"]["backends"]["onnx"]["quantization"]["parity"]
    assert parity["psnr_db"] >= 30.0  # measured on the CPU provider: no QNN device here
    assert "CPU provider" in manifest["quantization"]["summary"]
    graph = onnx.load(str(out / "unet" / "model.onnx")).graph
    zero_points = {i.name: i.data_type for i in graph.initializer if i.name.endswith("zero_point")}
    q_inputs = [n.input[2] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert q_inputs and all(zero_points[z] == onnx.TensorProto.UINT16 for z in q_inputs)  # 16-bit activations
    weights = [n.input[2] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in
               {i.name for i in graph.initializer}]
    assert any(zero_points[z] == onnx.TensorProto.UINT8 for z in weights)  # 8-bit weights
    assert Text2Image(out, backend="onnx")("a red circle", steps=2).size == (64, 64)


def test_below_the_floor_is_an_error_and_writes_nothing(tiny_random_bundle, calib, tmp_path):
    out = tmp_path / "q"
    config = QuantizeConfig(backend="onnx", scheme="dynamic", calibration_dir=str(calib.folder), min_psnr=500.0)
    with pytest.raises(QuantizationQualityError, match="below the floor"):
        quantize_bundle(tiny_random_bundle, out, config)
    assert not out.exists()


def _floor_just_above(bundle, calib, tmp_path, component: str, *, sensitivity) -> tuple[float, dict]:
    """qdq-static on ``component`` alone: the PSNR full quantization reaches, and the manifest entry of a run
    whose floor is 0.5 dB above it (``sensitivity`` None: the scheme's default)."""
    few = QuantOptions(calib_samples=4)
    runs = []
    for name, floor in (("full", 0.0), ("mixed", None)):
        floor = runs[0] + 0.5 if floor is None else floor
        manifest = quantize_bundle(bundle, tmp_path / name, QuantizeConfig(
            backend="onnx", scheme="qdq-static", components=(component,), calibration_dir=str(calib.folder),
            min_psnr=floor, sensitivity=sensitivity if name == "mixed" else False, image_prompts=0, options=few))
        entry = manifest["components"][component]["backends"]["onnx"]["quantization"]
        runs.append(entry["parity"]["psnr_db"] if name == "full" else entry)
    return runs[0], runs[1]


def test_sensitivity_keeps_blocks_float_until_the_floor(tiny_random_bundle, calib, tmp_path):
    # node names as the exporter writes them: the wrapper module's attribute, then the UNet's module path
    names = ["/unet/Constant", "/unet/conv_in/Conv", "/unet/time_embedding/linear_1/Gemm",
             "/unet/down_blocks.0/resnets.0/conv1/Conv", "/unet/down_blocks.1/attentions.0/proj_in/MatMul",
             "/unet/mid_block/resnets.0/conv1/Conv", "/unet/up_blocks.0/resnets.0/conv2/Conv", "/unet/conv_out/Conv",
             "Constant_12"]
    groups = block_groups(names)
    assert groups == ["conv_in", "time_embedding", "down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0",
                      "conv_out"]
    cost = {"conv_in": 1.0, "time_embedding": 0.5, "down_blocks.0": 4.0, "down_blocks.1": 8.0, "mid_block": 2.0,
            "up_blocks.0": 3.0, "conv_out": 0.2}

    def psnr(excluded):  # a fake: every quantized group costs some dB
        return 60.0 - sum(v for k, v in cost.items() if k not in excluded)

    result = search(groups, psnr, floor_db=50.0)
    assert result.met and result.kept_float == ["down_blocks.1", "down_blocks.0"]
    assert result.steps[-1]["psnr_db"] >= 50.0 and result.per_group_db["down_blocks.1"] == 52.0
    # for real: a floor just above what full quantization reaches (4 calibration calls: a dozen trials)
    reached, entry = _floor_just_above(tiny_random_bundle, calib, tmp_path, "unet", sensitivity=True)
    assert entry["exclude"] and entry["parity"]["psnr_db"] >= reached + 0.5
    assert "unet" not in entry["exclude"] and len(entry["sensitivity"]["per_group_db"]) >= 5  # blocks, not the whole
    assert entry["sensitivity"]["kept_float"] == entry["exclude"]


def test_cli_quantize_refusals_and_summary(tiny_random_bundle, calib, tmp_path, capsys):
    out = tmp_path / "q"
    args = ["quantize", str(tiny_random_bundle), "-o", str(out), "--backend", "onnx", "--scheme", "dynamic",
            "--calib-dir", str(calib.folder), "--min-psnr", "10", "--image-prompts", "0"]
    assert main(["--quiet", *args]) == 0
    assert "unet" in capsys.readouterr().out
    assert main(["--quiet", *args]) != 0 and "already exists" in capsys.readouterr().err
    again = ["quantize", str(out), "-o", str(tmp_path / "qq"), "--backend", "onnx", "--scheme", "dynamic"]
    assert main(["--quiet", *again]) != 0 and "already quantized" in capsys.readouterr().err
    bad = ["quantize", str(tiny_random_bundle), "-o", str(tmp_path / "x"), "--backend", "onnx", "--scheme", "int4"]
    assert main(["--quiet", *bad]) != 0 and "onnx schemes: dynamic, int4-weights" in capsys.readouterr().err
    for spec, extra, message in (("unet=dynamic", ["--components", "unet"], "cannot also be given"),
                                 ("unet=dynamic,unet=int8-weights", [], "names unet twice"),
                                 ("unet:dynamic,vae_decoder=int8-weights", [], "bad --scheme item"),
                                 ("unet=int3", [], "no scheme 'int3' for onnx"),
                                 ("decoder=dynamic", [], "has no component decoder")):
        bad = ["quantize", str(tiny_random_bundle), "-o", str(tmp_path / "x"), "--backend", "onnx",
               "--scheme", spec, "--calib-dir", str(calib.folder), *extra]
        assert main(["--quiet", *bad]) != 0 and message in capsys.readouterr().err, spec
    bad = ["quantize", str(tiny_random_bundle), "-o", str(tmp_path / "x"), "--backend", "openvino", "--scheme",
           "int8-weights", "--compact", "--calib-dir", str(calib.folder)]
    assert main(["--quiet", *bad]) != 0 and "--compact is for ONNX graphs" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["--quiet", "bench", str(out), "--steps", "1", "--repeat", "1", "--warmup", "0",
                 "--quality-prompts", "0", "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["figures"]["size_bytes"] > 0


def test_a_scheme_per_component_and_weight_only_graphs(tiny_random_bundle, calib, tmp_path):
    import onnx

    from edgeldm.compressor.quantize.onnxruntime_schemes import MIN_WEIGHT_ELEMENTS

    out = tmp_path / "q"
    spec = "text_encoder=int4-weights,unet=int8-weights,vae_decoder=int8-weights"
    manifest = quantize_bundle(tiny_random_bundle, out, QuantizeConfig(
        backend="onnx", scheme=spec, calibration_dir=str(calib.folder), min_psnr=20.0, image_prompts=1))
    q = manifest["quantization"]
    assert q["schemes"] == {"text_encoder": "int4-weights", "unet": "int8-weights", "vae_decoder": "int8-weights"}
    assert q["components"] == ["text_encoder", "unet", "vae_decoder"] and "text_encoder: INT4" in q["summary"]
    for comp, scheme in q["schemes"].items():
        entry = manifest["components"][comp]
        assert entry["precision"] == scheme
        onnx_entry = entry["backends"]["onnx"]
        assert onnx_entry["quantization"]["scheme"] == scheme and onnx_entry["quantization"]["parity"]["psnr_db"] > 20
        assert onnx_entry["session_config"] == {"session.disable_quant_qdq": "1"}
        graph = onnx.load(str(out / comp / "model.onnx"))
        floats = {t.name for t in graph.graph.initializer
                  if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) >= MIN_WEIGHT_ELEMENTS}
        weights = [n.input[0 if n.op_type == "Gather" else 1] for n in graph.graph.node
                   if n.op_type in ("Conv", "MatMul", "Gemm", "Gather")]
        assert not floats.intersection(weights), (comp, floats.intersection(weights))  # none left in fp32
        ops = {n.op_type for n in graph.graph.node}
        assert "DequantizeLinear" in ops or comp == "text_encoder"
        if scheme == "int4-weights":
            assert {"MatMulNBits", "GatherBlockQuantized"} <= ops
            # embedding scales in fp16 (a fifth of an INT4 table's bytes in fp32), cast back to fp32 after
            inits = {t.name: t for t in graph.graph.initializer}
            gathers = [n for n in graph.graph.node if n.op_type == "GatherBlockQuantized"]
            assert all(inits[n.input[2]].data_type == onnx.TensorProto.FLOAT16 for n in gathers)
            consumers = [m for n in gathers for m in graph.graph.node if n.output[0] in m.input]
            assert [m.op_type for m in consumers] == ["Cast"] * len(gathers)
        before = (tiny_random_bundle / comp / "model.onnx").stat().st_size
        assert (out / comp / "model.onnx").stat().st_size < 0.5 * before
    # the runtime loads each graph with the settings its scheme asked for (ORT folds the weights at load)
    pipe = Text2Image(out)
    for comp in q["schemes"]:
        options = pipe.sessions[comp].session.get_session_options()
        assert options.get_session_config_entry("session.disable_quant_qdq") == "1"
    assert pipe("a red circle", steps=2).size == (64, 64)
    # --per-tensor: one scale per weight tensor instead of one per output channel
    tensor = quantize_bundle(tiny_random_bundle, tmp_path / "t", QuantizeConfig(
        backend="onnx", scheme="int8-weights", components=("unet",), options=QuantOptions(per_channel=False),
        calibration_dir=str(calib.folder), min_psnr=20.0, image_prompts=0))
    assert tensor["components"]["unet"]["backends"]["onnx"]["quantization"]["parity"]["psnr_db"] > 20
    scales = [t for t in onnx.load(str(tmp_path / "t" / "unet" / "model.onnx")).graph.initializer
              if t.name.endswith("_scale")]
    assert scales and all(list(t.dims) == [] for t in scales)


def test_a_mix_naming_text_encoder_covers_sdxls_second_encoder():
    """tiny-demo's per-component mix, written for SD 1.5, left SDXL's text_encoder_2 (its largest) in fp32."""
    from edgeldm.compressor.quantize.schemes import component_schemes

    present = ("text_encoder", "text_encoder_2", "unet", "vae_decoder")
    mix = component_schemes("onnx", "text_encoder=int4-weights,unet=int8-weights", present=present)
    assert {c: s.name for c, s in mix.items()} == {
        "text_encoder": "int4-weights", "unet": "int8-weights", "text_encoder_2": "int4-weights"}
    named = component_schemes("onnx", "text_encoder=int4-weights,text_encoder_2=int8-weights", present=present)
    assert named["text_encoder_2"].name == "int8-weights"  # named itself: its own scheme
    assert "text_encoder_2" not in component_schemes("onnx", "unet=int8-weights", present=present)


def test_optimum_loads_quantized_bundles(tiny_random_bundle, calib, tmp_path):
    from optimum.intel import OVStableDiffusionPipeline
    from optimum.onnxruntime import ORTStableDiffusionPipeline

    for backend, scheme, cls in (("onnx", "qdq-static", ORTStableDiffusionPipeline),
                                 ("onnx", "text_encoder=int4-weights,unet=int8-weights", ORTStableDiffusionPipeline),
                                 ("openvino", "hybrid", OVStableDiffusionPipeline)):
        out = tmp_path / scheme.replace(",", "_")
        compact = "int4" in scheme  # compacted graphs keep the interface optimum loads by
        manifest = quantize_bundle(tiny_random_bundle, out, QuantizeConfig(
            backend=backend, scheme=scheme, min_psnr=10.0, calibration_dir=str(calib.folder), image_prompts=0,
            compact=compact))
        if compact:
            for comp in ("text_encoder", "unet"):
                stats = manifest["components"][comp]["backends"]["onnx"]["quantization"]["compact"]
                assert stats["bytes_after"] < stats["bytes_before"] and stats["parity"]["psnr_db"] >= 80
                assert stats["bytes_after"] == (out / comp / "model.onnx").stat().st_size
            assert manifest["recipe"]["options"]["compact"] is True
            verify_files(out, load_manifest(out))
        pipe = cls.from_pretrained(str(out))
        images = pipe("a red circle", num_inference_steps=2, output_type="np", height=64, width=64).images
        assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()


@pytest.mark.parametrize("scheme", ["palettize6", "linear8"])
def test_coreml_weight_schemes_convert_here_and_record_why_unvalidated(tiny_random_coreml_bundle, tmp_path, scheme):
    import coremltools as ct

    out = tmp_path / scheme
    manifest = quantize_bundle(tiny_random_coreml_bundle, out,
                               QuantizeConfig(backend="coreml", scheme=scheme, calibration=CAPTURE))
    verify_files(out, load_manifest(out))
    unet = manifest["components"]["unet"]["backends"]["coreml"]
    package = ct.models.MLModel(str(out / "unet" / "model.mlpackage"), skip_model_load=sys.platform != "darwin")
    ops = {op.type for f in package.get_spec().mlProgram.functions.values()
           for b in f.block_specializations.values() for op in b.operations}
    assert ("constexpr_lut_to_dense" if scheme.startswith("palettize") else "constexpr_affine_dequantize") in ops
    if sys.platform != "darwin":
        assert unet["quantization"]["parity"] == {"skipped": "Core ML prediction needs macOS"}
        assert manifest["quantization"]["image_parity"] == {"skipped": "Core ML prediction needs macOS"}
    # the capture ran on the bundle's ONNX graphs, the trajectory any backend follows
    assert manifest["quantization"]["calibration"]["calls"]["unet"] == 16


def test_coreml_w8a8_says_it_needs_macos(tiny_random_coreml_bundle, tmp_path):
    if sys.platform == "darwin":
        pytest.skip("on macOS the activation calibration runs; this checks the refusal elsewhere")
    with pytest.raises(EdgeLDMError, match="macOS only"):
        quantize_bundle(tiny_random_coreml_bundle, tmp_path / "q",
                        QuantizeConfig(backend="coreml", scheme="w8a8", calibration=CAPTURE))
    assert not (tmp_path / "q").exists()


def test_the_default_floor_keeps_quality_and_depends_on_what_the_scheme_quantizes():
    from edgeldm.compressor.quantize.bundle import _floor, _sensitivity
    from edgeldm.compressor.quantize.schemes import get_scheme

    config = QuantizeConfig(backend="openvino", scheme="hybrid")
    hybrid, int8 = get_scheme("openvino", "hybrid"), get_scheme("openvino", "int8-weights")
    # activation schemes: the 52 dB floor, met by keeping sensitive blocks float (within 2 points on tiny)
    assert _floor(config, hybrid) == 52.0 and _sensitivity(config, hybrid) is True
    assert _floor(config, int8) == 45.0 and _sensitivity(config, int8) is False
    told = QuantizeConfig(backend="openvino", scheme="hybrid", min_psnr=30.0, sensitivity=False)
    assert _floor(told, hybrid) == 30.0 and _sensitivity(told, hybrid) is False


def test_keep_failed_writes_the_bundle_marked_failed_and_still_fails(tiny_random_bundle, calib, tmp_path, capsys):
    out = tmp_path / "q"
    config = QuantizeConfig(backend="onnx", scheme="dynamic", calibration_dir=str(calib.folder), min_psnr=500.0,
                            keep_failed=True, image_prompts=0)
    with pytest.raises(QuantizationQualityError, match="kept in .* as asked"):
        quantize_bundle(tiny_random_bundle, out, config)
    manifest = load_manifest(out)
    gate = manifest["quantization"]["gate"]
    assert gate["passed"] is False and len(gate["failures"]) == 2  # text encoder and UNet, both named
    assert manifest["components"]["unet"]["backends"]["onnx"]["quantization"]["passed"] is False
    verify_files(out, manifest)  # a complete bundle, for inspection
    cli = ["quantize", str(tiny_random_bundle), "-o", str(tmp_path / "cli"), "--backend", "onnx", "--scheme",
           "dynamic", "--calib-dir", str(calib.folder), "--min-psnr", "500", "--image-prompts", "0"]
    assert main(cli) == 1 and not (tmp_path / "cli").exists()
    assert "below the floor 500 dB; nothing was written" in capsys.readouterr().err
    assert main([*cli, "--keep-failed"]) == 1 and (tmp_path / "cli" / "edgeldm.json").is_file()


def test_sensitivity_covers_text_encoder_layers_and_vae_blocks(tiny_random_bundle, calib, tmp_path):
    names = ["/text_encoder/text_model/embeddings/token_embedding/Gather",
             "/text_encoder/text_model/encoder/layers.0/self_attn/q_proj/MatMul",
             "/text_encoder/text_model/encoder/layers.1/mlp/fc1/MatMul",
             "/text_encoder/text_model/final_layer_norm/LayerNormalization",
             "/vae/decoder/mid_block/resnets.0/conv1/Conv", "/vae/decoder/up_blocks.1/resnets.0/conv1/Conv",
             "/vae/post_quant_conv/Conv"]
    assert block_groups(names) == ["text_model.embeddings", "text_model.encoder.layers.0",
                                   "text_model.encoder.layers.1", "text_model.final_layer_norm",
                                   "decoder.mid_block", "decoder.up_blocks.1", "post_quant_conv"]
    # for real, on by default for an activation scheme: a floor just above full quantization's text encoder
    reached, entry = _floor_just_above(tiny_random_bundle, calib, tmp_path, "text_encoder", sensitivity=None)
    assert entry["exclude"] and entry["parity"]["psnr_db"] >= reached + 0.5 and entry["passed"]
    assert all(e.startswith("text_model.") for e in entry["exclude"])

"""Core ML for the Neural Engine: the UNet split into chunks (forced with --chunks, automatic above the 1 GB
compile limit), chained by name at run time, compressed chunk by chunk; split_einsum attention. Conversion and
structure are checked here (Linux too), on tiny-random and on the sd15 preset; prediction only on macOS."""

import json
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("coremltools")

from edgeldm.calibration.capture import CaptureConfig  # noqa: E402
from edgeldm.compressor.quantize import QuantizeConfig, quantize_bundle  # noqa: E402
from edgeldm.compressor.quantize.schemes import QuantOptions  # noqa: E402
from edgeldm.errors import EdgeLDMError  # noqa: E402
from edgeldm.exporters.bundle import ExportConfig, component_ios, export_bundle  # noqa: E402
from edgeldm.exporters.coreml_chunks import CHUNK_LIMIT_BYTES, split_package, weights_bytes  # noqa: E402
from edgeldm.runtimes.backends.coreml_session import chunk_packages  # noqa: E402
from edgeldm.manifest import graph_file, load_manifest, verify_files  # noqa: E402

CAPTURE = CaptureConfig(samples=2, steps=2, shard_size=4)
on_mac = pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction needs macOS")


def _model(package):
    import coremltools as ct

    return ct.models.MLModel(str(package), skip_model_load=sys.platform != "darwin")


def _ops(package) -> list[str]:
    spec = _model(package).get_spec()
    return [op.type for f in spec.mlProgram.functions.values() for b in f.block_specializations.values()
            for op in b.operations]


def _lut_shapes(package) -> tuple[list[list[int]], int]:
    spec = _model(package).get_spec()
    return [[d.constant.size for d in op.inputs["lut"].arguments[0].value.type.tensorType.dimensions]
            for f in spec.mlProgram.functions.values() for b in f.block_specializations.values()
            for op in b.operations if op.type == "constexpr_lut_to_dense"], spec.specificationVersion


def _flows(chunks: list[dict], inputs: set[str]) -> bool:
    available = set(inputs)
    for chunk in chunks:
        if not set(chunk["inputs"]) <= available:
            return False
        available |= set(chunk["outputs"])
    return True


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """tiny-random, static, ONNX + Core ML (iOS18: grouped palettization), the UNet in 3 chunks with split_einsum
    attention; and that bundle palettized to 4 bits per grouped channel on Core ML."""
    root = tmp_path_factory.mktemp("chunks")
    bundle, quantized = root / "bundle", root / "palettized"
    export_bundle("tiny-random", bundle, ExportConfig(backends=("onnx", "coreml"), static=True, coreml_target="iOS18",
                                                      coreml_chunks=3, coreml_attention="split_einsum"))
    quantize_bundle(bundle, quantized, QuantizeConfig(backend="coreml", scheme="palettize4",
                                                      options=QuantOptions(group_size=8), calibration=CAPTURE))
    return bundle, quantized


def test_the_unet_is_written_as_chunks_that_chain_by_name(chunked, tiny_random_pipe):
    bundle, _ = chunked
    manifest = load_manifest(bundle)
    verify_files(bundle, manifest)
    entry = manifest["components"]["unet"]["backends"]["coreml"]
    chunks = entry["chunks"]
    assert [c["graph"] for c in chunks] == [f"unet/model_chunk{i}.mlpackage" for i in (1, 2, 3)]
    assert not (bundle / "unet" / "model.mlpackage").exists()
    assert all(any(f.startswith(c["graph"] + "/") for f in entry["files"]) for c in chunks)
    io = component_ios(tiny_random_pipe, 64, 64)["unet"]
    # every chunk reads only model inputs or earlier chunks' outputs; the last writes the model's output
    assert _flows(chunks, set(io.input_names)) and chunks[-1]["outputs"] == ["out_sample"]
    assert chunks[0]["inputs"] == list(io.input_names)
    # the cuts balance the weights (each chunk near a third of them)
    sizes = [weights_bytes(bundle / c["graph"]) for c in chunks]
    assert max(sizes) < 0.5 * sum(sizes)
    for i, c in enumerate(chunks, 1):
        meta = _model(bundle / c["graph"]).user_defined_metadata
        assert meta["chunk"] == f"{i}/3" and json.loads(meta["chunk_outputs"]) == c["outputs"]
        assert meta["attention"] == "split_einsum" and meta["component"] == "unet"
    # the runtime opens the first chunk and finds the rest; the other components stay whole
    first = graph_file(bundle, manifest, "unet", "coreml")
    assert first.name == "model_chunk1.mlpackage" and chunk_packages(first) == [bundle / c["graph"] for c in chunks]
    assert graph_file(bundle, manifest, "text_encoder", "coreml").name == "model.mlpackage"
    assert manifest["recipe"]["options"]["coreml_chunks"] == 3


def test_split_einsum_converts_every_head_as_its_own_softmax(chunked, tiny_random_pipe):
    from diffusers.models.attention_processor import Attention

    bundle, _ = chunked
    heads = sum(m.heads for m in tiny_random_pipe.unet.modules() if isinstance(m, Attention))
    softmaxes = sum(_ops(bundle / c["graph"]).count("softmax")
                    for c in load_manifest(bundle)["components"]["unet"]["backends"]["coreml"]["chunks"])
    assert heads > len([m for m in tiny_random_pipe.unet.modules() if isinstance(m, Attention)])  # multi-head
    assert softmaxes == heads


def test_split_einsum_is_diffusers_attention_arithmetic(tiny_random_pipe):
    import torch

    from edgeldm.exporters.attention_slicing import SplitEinsumAttnProcessor, swapped_attention

    unet = tiny_random_pipe.unet
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(2, unet.config.in_channels, 8, 8, generator=g), torch.tensor(500.0),
            torch.randn(2, 77, unet.config.cross_attention_dim, generator=g))
    with torch.no_grad():
        ref = unet(*args).sample
        with swapped_attention(unet, SplitEinsumAttnProcessor()):
            out = unet(*args).sample
        again = unet(*args).sample  # restored afterwards
    assert torch.allclose(out, ref, atol=1e-5) and not torch.equal(out, torch.zeros_like(out))
    assert torch.equal(again, ref)


def test_palettization_applies_per_chunk_and_the_manifest_follows(chunked):
    bundle, quantized = chunked
    manifest = load_manifest(quantized)
    verify_files(quantized, manifest)
    before = load_manifest(bundle)["components"]["unet"]["backends"]["coreml"]["chunks"]
    after = manifest["components"]["unet"]["backends"]["coreml"]["chunks"]
    assert [(c["graph"], c["inputs"], c["outputs"]) for c in after] == \
        [(c["graph"], c["inputs"], c["outputs"]) for c in before]
    for old, new in zip(before, after):
        luts, version = _lut_shapes(quantized / new["graph"])
        assert luts, f"{new['graph']} was not palettized"
        assert new["bytes"] < 0.5 * old["bytes"]  # 4-bit tables for fp32 weights
        # iOS18 (ML program spec 9): one 16-entry table per 8 output channels (an iOS16 package: one per tensor)
        assert version >= 9 and all(lut[-2:] == [16, 1] for lut in luts) and any(lut[0] > 1 for lut in luts)
    assert not (quantized / "unet" / "model.mlpackage").exists()


def test_w8a8_refuses_a_chunked_graph_with_what_to_do(chunked, tmp_path):
    bundle, _ = chunked
    with pytest.raises(EdgeLDMError, match="in chunks") as info:
        quantize_bundle(bundle, tmp_path / "q", QuantizeConfig(backend="coreml", scheme="w8a8", components=("unet",),
                                                               calibration=CAPTURE))
    assert "palettize6" in info.value.hint and not (tmp_path / "q").exists()


def test_automatic_chunking_keeps_every_chunk_under_the_limit(chunked, tmp_path):
    # the UNet's last chunk is a program like any other (the text encoder's is one embedding table: no cut)
    package = tmp_path / "unet" / "model.mlpackage"
    shutil.copytree(chunked[0] / "unet" / "model_chunk3.mlpackage", package)
    total = weights_bytes(package)
    assert split_package(package, None, limit_bytes=total + 1) == []  # under the limit: left whole
    assert package.is_dir()
    limit = total // 2 + total // 8
    chunks = split_package(package, None, limit_bytes=limit)
    assert len(chunks) >= 2 and not package.exists()
    assert all(weights_bytes(package.parent / c["graph"]) <= limit for c in chunks)
    assert CHUNK_LIMIT_BYTES == 1 << 30


def test_bad_chunk_and_attention_options_are_refused_before_any_work(tmp_path):
    from edgeldm.cli import main

    with pytest.raises(EdgeLDMError, match="--chunks must be a positive"):
        ExportConfig(backends=("coreml",), static=True, coreml_chunks=0).check()
    with pytest.raises(EdgeLDMError, match="--coreml-attention must be one of original, split_einsum"):
        ExportConfig(backends=("coreml",), static=True, coreml_attention="flash").check()
    assert main(["export", "tiny-random", "-o", str(tmp_path / "b"), "--backend", "coreml", "--static",
                 "--chunks", "0"]) == 1
    assert not (tmp_path / "b").exists()


def test_the_session_runs_the_chunks_in_order_feeding_each_by_name(chunked, tiny_random_pipe, monkeypatch):
    """Core ML's predict stubbed (it needs macOS): each chunk is fed exactly the values it declares, taken from
    the inputs and the earlier chunks' outputs; the last chunk's output is the session's."""
    from edgeldm.exporters.dummy_inputs import example_inputs
    from edgeldm.manifest import component_io
    from edgeldm.runtimes.backends import open_session

    bundle, _ = chunked
    manifest = load_manifest(bundle)
    io = component_io(manifest, "unet")
    monkeypatch.setattr(sys, "platform", "darwin")
    session = open_session("coreml", graph_file(bundle, manifest, "unet", "coreml"), io)
    chunks = manifest["components"]["unet"]["backends"]["coreml"]["chunks"]
    assert len(session.models) == 3
    made, fed = {}, []
    for index, (model, chunk) in enumerate(zip(session.models, chunks)):
        outputs = {f.name: tuple(f.type.multiArrayType.shape) for f in model.get_spec().description.output}
        assert list(outputs) == chunk["outputs"]

        def predict(feed, index=index, outputs=outputs):
            fed.append((index, dict(feed)))
            result = {name: np.full(shape, index + 1.0, np.float32) for name, shape in outputs.items()}
            made.update(result)
            return result

        model.predict = predict
    inputs = example_inputs(io)
    out = session(**inputs)
    assert [i for i, _ in fed] == [0, 1, 2]
    for (index, feed), chunk in zip(fed, chunks):
        assert sorted(feed) == sorted(chunk["inputs"])
        for name, value in feed.items():
            expected = made[name] if name in made else inputs[name]
            np.testing.assert_array_equal(value.ravel(), np.asarray(expected, np.float32).ravel())
    assert np.all(out["out_sample"] == 3.0) and out["out_sample"].shape == io.resolve(io.outputs[0])


@on_mac
def test_chunked_prediction_matches_the_onnx_graph(chunked):
    from edgeldm.exporters.dummy_inputs import example_inputs
    from edgeldm.exporters.validation import tensor_psnr
    from edgeldm.manifest import component_io
    from edgeldm.runtimes.backends import open_session

    bundle, _ = chunked
    manifest = load_manifest(bundle)
    io = component_io(manifest, "unet")
    inputs = example_inputs(io, seed=4)
    ref = open_session("onnx", graph_file(bundle, manifest, "unet", "onnx"), io)(**inputs)["out_sample"]
    out = open_session("coreml", graph_file(bundle, manifest, "unet", "coreml"), io,
                       compute_units="CPU_ONLY")(**inputs)["out_sample"]
    assert tensor_psnr(ref, out) >= 60.0

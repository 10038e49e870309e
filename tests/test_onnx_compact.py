"""Compacting ONNX graphs for shipping: fewer bytes and nodes, same outputs, same interface."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgeldm.exporters.onnx_compact import compact_onnx


def _feeds(session, batch: int, height: int, width: int, rng) -> dict:
    sizes = {"batch_size": batch, "latent_height": height, "latent_width": width, "sequence_length": 7}
    feeds = {}
    for i in session.get_inputs():
        dims = [d if isinstance(d, int) else sizes[d] for d in i.shape]
        feeds[i.name] = (rng.integers(0, 90, dims).astype(np.int64) if "int" in i.type
                         else rng.standard_normal(dims).astype(np.float32))
    return feeds


@pytest.mark.parametrize("component", ["unet", "text_encoder", "vae_decoder"])
def test_compacted_graph_is_smaller_with_the_same_outputs_and_interface(tiny_random_bundle, tmp_path, component):
    import onnx
    import onnxruntime as ort

    src = tiny_random_bundle / component / "model.onnx"
    dst = tmp_path / "model.onnx"
    shutil.copyfile(src, dst)
    stats = compact_onnx(dst)
    assert stats["bytes_after"] == dst.stat().st_size < stats["bytes_before"] == src.stat().st_size
    assert stats["nodes_after"] <= stats["nodes_before"]
    before, after = onnx.load(str(src)), onnx.load(str(dst))
    assert [i.name for i in after.graph.input] == [i.name for i in before.graph.input]
    assert [o.name for o in after.graph.output] == [o.name for o in before.graph.output]
    assert not after.graph.value_info and all(n.name == "" for n in after.graph.node)
    assert max(len(t.name) for t in after.graph.initializer) <= 4
    a, b = ort.InferenceSession(str(src)), ort.InferenceSession(str(dst))
    rng = np.random.default_rng(0)
    for shape in ((1, 8, 8), (2, 12, 16)):  # dynamic axes stay dynamic
        feeds = _feeds(a, *shape, rng)
        for x, y in zip(a.run(None, feeds), b.run(None, feeds)):
            assert x.shape == y.shape
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5)


def test_graphs_with_external_data_are_left_alone(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    path = tmp_path / "model.onnx"
    onnx.save_model(helper.make_model(graph), str(path), save_as_external_data=True, location="model.onnx_data",
                    size_threshold=0)
    before = path.read_bytes()
    assert "external data" in compact_onnx(path)["skipped"]
    assert path.read_bytes() == before

"""The headline speed benchmark (benchmarks/sd15_laptop_speed.py): its peer is optimum-intel's own hybrid-INT8
LCM pipeline, and one run on tiny-random writes every figure the issue names, per size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    from edgeldm.benchmarks.sd15_laptop_speed import PEER_FOLDER, build_peer

    work = tmp_path_factory.mktemp("laptop-speed")
    build_peer("tiny-random", work / PEER_FOLDER, calibration_calls=4)
    return work


def test_the_peer_is_optimum_intels_hybrid_int8_lcm(peer):
    import openvino as ov

    from edgeldm.benchmarks.sd15_laptop_speed import PEER_FOLDER

    folder = peer / PEER_FOLDER
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "LatentConsistencyModelPipeline"
    assert index["scheduler"][1] == "LCMScheduler"
    unet = ov.Core().read_model(str(folder / "unet" / "openvino_model.xml"))
    assert "timestep_cond" in {i.get_any_name() for i in unet.inputs}  # the guidance embedding an LCM has
    ops = {op.get_type_name() for op in unet.get_ops()}
    assert "FakeQuantize" in ops  # hybrid: activations quantized in the UNet, not only its weights
    decoder = ov.Core().read_model(str(folder / "vae_decoder" / "openvino_model.xml"))
    assert "FakeQuantize" not in {op.get_type_name() for op in decoder.get_ops()}  # the rest weight-only


def test_one_run_writes_every_figure_per_size(peer, tiny_random_bundle, tmp_path):
    from edgeldm.benchmarks import sd15_laptop_speed as speed

    out = tmp_path / "speed.json"
    assert speed.main([str(tiny_random_bundle), "--model", "tiny-random", "--sizes", "64", "--repeat", "1",
                       "--warmup", "1", "--threads", "1", "--work", str(peer), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    row = doc["sizes"]["64"]
    for figure in ("speedup_vs_torch", "speedup_vs_optimum_intel", "floor_ratio", "floor_ratio_int8"):
        assert math.isfinite(row[figure]) and row[figure] > 0, figure
    assert set(row["peak_rss_bytes"]) == {"ours", "optimum_intel", "torch"}
    assert all(v > 2**20 for v in row["peak_rss_bytes"].values())
    ours, torch_side = row["targets"]["ours_beside_torch"], row["targets"]["torch"]
    # the speed-up is the inverse of the median ratio of the pairs, here one pair: the two images' times
    assert row["speedup_vs_torch"] == pytest.approx(torch_side["image_s"] / ours["image_s"], rel=1e-6)
    assert row["config"]["torch"] == {"steps": 25, "guidance": 7.5}
    assert row["config"]["ours_warmup_beside_torch"] == 1 and row["config"]["torch_warmup"] == 0
    for name, target in row["targets"].items():  # time outside the components: what a cold call would add
        inside = target["image_s"] - target["outside_components_s"]
        assert 0 < inside <= target["image_s"] * 1.001, name
    assert row["targets"]["optimum_intel"]["unet_calls_per_image"] == row["config"]["ours"]["steps"]
    # the floor counts this bundle's image: 25 guided steps of tiny-random (UNet batch 2) + decoder + encoder
    macs = row["floor"]["macs"]
    assert macs["unet_batch"] == 2 and macs["total"] == macs["text_encoder"] + macs["unet"] + macs["vae_decoder"]
    assert row["floor_ratio"] == pytest.approx(row["targets"]["ours"]["image_s"] / row["floor"]["floor_s"], rel=1e-6)
    assert doc["goals"] == {}  # 512 px not measured: no goal claimed
    assert doc["command"].startswith("python -m edgeldm.benchmarks.sd15_laptop_speed")


def test_goals_read_the_512_px_row():
    from edgeldm.benchmarks.sd15_laptop_speed import goals

    row = {"speedup_vs_torch": 41.0, "speedup_vs_optimum_intel": 1.2, "floor_ratio": 2.5,
           "peak_rss_bytes": {"ours": 1, "optimum_intel": 2, "torch": 3}}
    g = goals({"512": row, "256": {**row, "speedup_vs_optimum_intel": 9.0}})
    assert g["speedup_vs_torch"]["met"] and not g["speedup_vs_optimum_intel"]["met"]
    assert not g["floor_ratio"]["met"] and g["peak_rss_below_optimum_intel"]["met"]
    assert np.isclose(g["speedup_vs_optimum_intel"]["measured"], 1.2)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_op_profile_splits_a_graphs_time_by_operator_type(tiny_random_bundle, backend):
    from edgeldm.benchmarks.op_profile import profile

    out = profile(tiny_random_bundle, "unet", backend, size=64, runs=2, threads=1)
    assert out["inputs"]["sample"] == [2, 4, 32, 32]  # a guided bundle: the UNet's batch of two, latents at 64 px
    table = out["by_op_type"]
    assert sum(r["share"] for r in table.values()) == pytest.approx(1.0)
    assert sum(r["ms"] for r in table.values()) == pytest.approx(out["total_ms"])
    assert list(table) == sorted(table, key=lambda k: -table[k]["ms"])  # the costliest first
    assert any(op in table for op in ("Conv", "Convolution")) and all(r["nodes"] >= 1 for r in table.values())
    if backend == "openvino":  # the kernels the plugin picked: precision and ISA in the name
        assert any("f32" in k.lower() for k in out["by_kernel"])


def test_op_profile_refuses_what_it_cannot_profile(tiny_random_bundle):
    from edgeldm.benchmarks.op_profile import profile
    from edgeldm.errors import EdgeLDMError

    with pytest.raises(EdgeLDMError, match="no profiler"):
        profile(tiny_random_bundle, "unet", "coreml")
    with pytest.raises(EdgeLDMError, match="no component"):
        profile(tiny_random_bundle, "vae_encoder", "onnx")
    with pytest.raises(EdgeLDMError, match="onnx backend takes no --inference-precision"):
        profile(tiny_random_bundle, "unet", "onnx", inference_precision="bf16")
    out = profile(tiny_random_bundle, "unet", "openvino", size=64, runs=1, threads=1, inference_precision="bf16")
    assert out["inference_precision"] == "bf16" and out["total_ms"] > 0


def test_a_missing_bundle_is_one_line_before_anything_slow(tmp_path):
    """A wrong path fails in seconds: not after optimum-intel exported the peer (minutes at 512 px), and as
    one line like every edgeldm command, not a traceback."""
    import subprocess
    import sys

    work = tmp_path / "work"
    proc = subprocess.run([sys.executable, "-m", "edgeldm.benchmarks.sd15_laptop_speed", str(tmp_path / "nope"),
                           "--model", "tiny-random", "--sizes", "64", "--work", str(work)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "error: bundle" in proc.stderr and "Traceback" not in proc.stderr
    assert not work.exists()

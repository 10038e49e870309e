"""edgeldm bench: timing figures, side-by-side ratios, history, the regression gate and the report."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgeldm.benchmarks.bench import (BENCH_SCHEMA, COMPONENT_PEAK_FIGURES, GATED_FIGURES, TIMED_FIGURES,
                                      append_history, compare, load_results, pick_baseline, run_bench)
from edgeldm.benchmarks.fingerprint import device_fingerprint, fingerprint_id
from edgeldm.benchmarks.report import pareto_front, write_report
from edgeldm.benchmarks.targets import BenchConfig, make_target
from edgeldm.lineage import derives_from_scenes
from edgeldm.cli import main
from edgeldm.errors import EdgeLDMError

CONFIG = BenchConfig(steps=2, guidance=7.5, repeat=2, warmup=0, threads=1, quality_prompts=4)


@pytest.fixture(scope="module")
def side_by_side(tiny_bundle):
    """One run of our runtime against diffusers' torch pipeline, alternately (the expensive part, done once)."""
    return run_bench(str(tiny_bundle), CONFIG, vs="diffusers:tiny", command="test")


def test_peak_memory_is_measured_by_the_os():
    code = ("from edgeldm.benchmarks.timing import peak_rss_bytes as p; import numpy as np; a = p(); "
            "x = np.ones(40_000_000); x += 1; print(a, p())")
    before, after = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())
    assert after - before > 250 * 2**20  # 40 M float64 = 305 MiB, touched


def test_fingerprint_identifies_the_device_not_the_library_versions():
    a = device_fingerprint(backend="onnx", device="CPUExecutionProvider", threads=2)
    assert a["cores"] >= 1 and a["cpu"] and a["python"] and "onnxruntime" in a["versions"]
    assert a["id"] == device_fingerprint(backend="onnx", device="CPUExecutionProvider", threads=2)["id"]
    assert a["id"] != device_fingerprint(backend="onnx", device="CPUExecutionProvider", threads=1)["id"]
    assert a["id"] != device_fingerprint(backend="openvino", device="CPU", threads=2)["id"]
    assert fingerprint_id({**a, "versions": {"onnxruntime": "0.0"}}) == a["id"]


def test_a_run_reports_every_figure_per_component(side_by_side):
    result, (images, captions) = side_by_side
    assert result["schema"] == BENCH_SCHEMA
    f = result["figures"]
    for name in TIMED_FIGURES:
        assert f[name]["repeat"] == CONFIG.repeat and 0 < f[name]["min"] <= f[name]["median"] <= f[name]["max"]
        assert len(result["samples"][name]) == CONFIG.repeat
    # the parts add up to no more than the whole image
    assert f["text_encoder_s"]["median"] + 2 * f["unet_step_s"]["median"] + f["vae_decode_s"]["median"] \
        <= f["image_s"]["median"] * 1.05
    assert f["unet_calls_per_image"] == CONFIG.steps  # guidance batched into one UNet call per step
    assert f["cold_load_s"] > 0 and f["peak_rss_bytes"] > 50 * 2**20 and f["size_bytes"] > 10 * 2**20
    for figure in COMPONENT_PEAK_FIGURES.values():  # the resident peak during each component's calls
        if sys.platform.startswith("linux"):
            assert 20 * 2**20 < f[figure] <= f["peak_rss_bytes"], figure
        else:
            assert f[figure] is None, figure
    assert result["target"]["kind"] == "bundle" and result["fingerprint"]["backend"] == "onnx"
    assert result["quality"]["images"] == 4 and 0.0 <= result["quality"]["accuracy"]["joint"] <= 1.0
    assert images.dtype == np.uint8 and images.shape[1:] == (64, 64, 3) and len(captions) == len(images)
    json.dumps(result)  # a plain JSON document


def test_side_by_side_reports_a_ratio_per_alternated_pair(side_by_side):
    result, _ = side_by_side
    vs, ratios = result["vs"], result["ratios"]
    assert vs["target"]["kind"] == "diffusers" and vs["fingerprint"]["backend"] == "torch"
    for name in TIMED_FIGURES:
        pairs = [a / b for a, b in zip(result["samples"][name], vs["samples"][name])]
        assert ratios[name]["per_pair"] == pytest.approx(pairs)
        assert ratios[name]["median"] == pytest.approx(float(np.median(pairs)))
    # torch's process carries torch: our torch-free runtime must not
    assert result["figures"]["peak_rss_bytes"] < vs["figures"]["peak_rss_bytes"]


def _slower(result: dict, figure: str, factor: float) -> dict:
    slow = copy.deepcopy(result)
    slow["created"], slow["run_id"] = "2999-01-01T00:00:00+00:00", f"slower-{figure}-{factor}"  # another run
    for key in ("median", "p90", "min", "max"):
        slow["figures"][figure][key] *= factor
    return slow


def test_the_gate_fails_on_a_slower_result_and_names_the_figure(side_by_side, tmp_path, capsys):
    result, _ = side_by_side
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    base.write_text(json.dumps(result))
    new.write_text(json.dumps(_slower(result, "unet_step_s", 1.3)))
    assert main(["bench", "compare", str(new), str(base), "--max-regression", "10%"]) == 1
    err = capsys.readouterr().err
    assert "unet_step_s" in err and "image_s" not in err
    assert main(["bench", "compare", str(new), str(base), "--max-regression", "40%"]) == 0
    assert main(["bench", "compare", str(base), str(base)]) == 1  # a result against itself always passes: refused
    assert "is the new result itself" in capsys.readouterr().err
    rows = compare(_slower(result, "image_s", 1.05), result, 0.10)
    measured = [f for f in GATED_FIGURES if result["figures"][f] is not None]  # component peaks: Linux only
    assert [r["figure"] for r in rows] == measured and not any(r["regressed"] for r in rows)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a component's resident peak needs Linux's "
                                                                  "/proc/self/clear_refs")
def test_the_gate_fails_when_one_component_needs_more_memory(side_by_side, tmp_path, capsys):
    result, _ = side_by_side
    bigger = copy.deepcopy(result)
    bigger["created"], bigger["run_id"] = "2999-01-01T00:00:00+00:00", "bigger-unet"
    bigger["figures"]["unet_peak_rss_bytes"] = int(result["figures"]["unet_peak_rss_bytes"] * 1.3)
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    base.write_text(json.dumps(result))
    new.write_text(json.dumps(bigger))
    assert main(["bench", "compare", str(new), str(base), "--max-regression", "10%"]) == 1
    err = capsys.readouterr().err
    assert "unet_peak_rss_bytes" in err and "vae_decode_peak_rss_bytes" not in err
    assert main(["bench", "compare", str(new), str(base), "--figures", "vae_decode_peak_rss_bytes"]) == 0


def test_history_keeps_one_folder_per_device_and_the_gate_reads_it(side_by_side, tmp_path):
    result, samples = side_by_side
    first = append_history(result, tmp_path / "hist", samples)
    assert first.parent.name == result["fingerprint"]["id"] and first.with_suffix(".png").is_file()
    newer = _slower(result, "image_s", 2.0)
    baseline = pick_baseline(newer, tmp_path / "hist")  # before appending: the latest run of this device and target
    assert baseline["created"] == result["created"]
    regressed = [r["figure"] for r in compare(newer, baseline, 0.1) if r["regressed"]]
    assert regressed == ["image_s"]
    append_history(newer, tmp_path / "hist")
    assert len(load_results(tmp_path / "hist")) == 2
    with pytest.raises(EdgeLDMError, match="is the new result itself"):  # after appending it would pass always
        pick_baseline(newer, tmp_path / "hist")


def test_report_is_a_page_with_its_pictures(side_by_side, tmp_path):
    result, samples = side_by_side
    append_history(result, tmp_path / "hist", samples)
    index = write_report(tmp_path / "hist", tmp_path / "report")
    page = index.read_text()
    pictures = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert "latency-vs-quality.png" in pictures and "latency-0.png" in pictures and len(pictures) >= 3
    for name in pictures:
        assert f'src="{name}"' in page
        with Image.open(tmp_path / "report" / name) as im:  # real, non-blank images
            assert im.size[0] > 200 and len(set(np.asarray(im.convert("L")).ravel().tolist())) > 8
    assert "diffusers:tiny" in page and f"onnx:{result['target']['location']}" in page  # both runs of the side-by-side result
    with pytest.raises(EdgeLDMError, match="already exists"):
        write_report(tmp_path / "hist", tmp_path / "report")


def test_pareto_front_keeps_only_unbeaten_variants():
    points = [(10.0, 0.90), (5.0, 0.80), (7.0, 0.95), (12.0, 0.97), (8.0, 0.70)]
    assert pareto_front(points) == [1, 2, 3]


def test_targets_resolve_by_kind_and_lineage(tiny_bundle):
    assert make_target(str(tiny_bundle), CONFIG).kind == "bundle"
    assert make_target("tiny", CONFIG).kind == "diffusers"
    assert make_target(f"optimum-ov:{tiny_bundle}", CONFIG).kind == "optimum-ov"
    ov = make_target(f"openvino:{tiny_bundle}", CONFIG)  # the backend in the spec beats --backend
    assert (ov.kind, ov.backend, ov.label) == ("bundle", "openvino", f"openvino:{tiny_bundle}")
    with pytest.raises(EdgeLDMError, match="not an edgeldm bundle"):
        make_target("optimum-ort:tiny", CONFIG)
    assert derives_from_scenes("tiny") and derives_from_scenes(str(tiny_bundle)) and derives_from_scenes("tiny-xl")
    assert not derives_from_scenes("tiny-random") and not derives_from_scenes("sd15")


def test_each_target_samples_at_its_own_defaults_unless_told(tiny_bundle, tmp_path, monkeypatch):
    from edgeldm.stages.bench import BenchOptions, configs, target_sampling as _target_sampling

    lcm = tmp_path / "lcm"
    (lcm / "unet").mkdir(parents=True)
    (lcm / "unet" / "config.json").write_text(json.dumps({"time_cond_proj_dim": 256}))
    assert _target_sampling(f"diffusers:{lcm}")["steps"] == 4 and _target_sampling("diffusers:tiny")["steps"] == 25
    assert _target_sampling(f"onnx:{tiny_bundle}")["steps"] == 25  # a bundle: its manifest's defaults

    def sides(target, **options):
        config, vs_config = configs(target, BenchOptions(**options))
        return {"main": (config.steps, config.guidance), "vs": (vs_config.steps, vs_config.guidance)}

    seen = sides(f"diffusers:{lcm}", vs="diffusers:tiny")
    assert seen == {"main": (4, 8.0), "vs": (25, 7.5)}  # student at 4, teacher at 25 guided
    seen = sides(f"diffusers:{lcm}", vs="diffusers:tiny", steps=2)
    assert seen == {"main": (2, 8.0), "vs": (2, 7.5)}  # a given option applies to both sides
    # one bundle at two precisions: the --vs side's own, else the main side's
    config, vs_config = configs(f"openvino:{tiny_bundle}", BenchOptions(vs=f"openvino:{tiny_bundle}",
                                                                        inference_precision="bf16"))
    assert config.inference_precision == vs_config.inference_precision == "bf16"
    config, vs_config = configs(f"openvino:{tiny_bundle}", BenchOptions(vs=f"openvino:{tiny_bundle}",
                                                                        vs_inference_precision="bf16"))
    assert (config.inference_precision, vs_config.inference_precision) == (None, "bf16")
    assert make_target(f"openvino:{tiny_bundle}", vs_config).label == f"openvino:{tiny_bundle} (bf16)"
    with pytest.raises(EdgeLDMError, match="onnx backend takes no --inference-precision"):
        make_target(f"onnx:{tiny_bundle}", vs_config)._session_options()


def test_each_side_warms_up_its_own_count_and_the_pairs_stay_alternated(monkeypatch):
    """A 4-step bundle can be warmed up beside a 25-step torch baseline that is not (its image takes minutes)."""
    from dataclasses import replace

    from edgeldm.benchmarks import worker

    calls = []

    class Recording:  # the worker process's interface, recording the order of the images asked for
        def __init__(self, spec, config):
            self.spec = spec

        def load(self):
            return {"cold_load_s": 0.1, "size_bytes": 1, "source": "x",
                    "describe": {"backend": "onnx", "device": "cpu"}}

        def image(self, seed):
            calls.append(self.spec)
            return {"image_s": 1.0, "text_encoder_s": 0.1, "unet_step_s": 0.2, "vae_decode_s": 0.3,
                    "unet_calls": 2, "image": np.zeros((8, 8, 3), np.uint8)}

        def peak_memory(self):
            return {"peak_rss_bytes": 2**20, "components": {}}

        def close(self):
            pass

    monkeypatch.setattr(worker, "TargetProcess", Recording)
    config = replace(CONFIG, repeat=2, warmup=1, quality_prompts=0)
    result, _ = run_bench("A", config, vs="B", vs_config=replace(config, warmup=0))
    assert calls == ["A", "A", "B", "A", "B"]  # A's warm-up only, then A B A B
    assert result["figures"]["image_s"]["warmup"] == 1 and result["vs"]["figures"]["image_s"]["warmup"] == 0
    assert len(result["samples"]["image_s"]) == len(result["vs"]["samples"]["image_s"]) == 2
    with pytest.raises(EdgeLDMError, match="--warmup >= 0"):
        run_bench("A", config, vs="B", vs_config=replace(config, warmup=-1))


def test_bench_cli_writes_json_and_markdown(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--quiet", "bench", str(tiny_bundle), "--steps", "1", "--repeat", "1", "--warmup", "0",
                 "--quality-prompts", "0", "--json", str(out), "--markdown"]) == 0
    doc = json.loads(out.read_text())
    assert doc["quality"] is None and doc["config"]["steps"] == 1 and doc["figures"]["unet_calls_per_image"] == 1
    assert "| image_s |" in capsys.readouterr().out
    assert main(["bench", "compare", str(out), str(tmp_path / "missing.json")]) != 0
    assert main(["bench", "compare", str(out), str(out), "--max-regression", "ten"]) != 0


def test_gate_compares_before_appending_and_a_regressed_run_is_never_the_baseline(side_by_side, tmp_path):
    from edgeldm.benchmarks.bench import gate

    result, _ = side_by_side
    hist = tmp_path / "hist"
    assert gate(result, hist, 0.10) is None  # an empty history: this run becomes the baseline
    append_history(result, hist)
    slow = _slower(result, "unet_step_s", 1.3)
    verdict = gate(slow, hist, 0.10)
    assert verdict["passed"] is False and verdict["baseline_run_id"] == result["run_id"]
    assert [r["figure"] for r in verdict["rows"] if r["regressed"]] == ["unet_step_s"]
    append_history({**slow, "gate": verdict}, hist)
    # the next run is compared with the last good one, not with the regressed one
    later = _slower(result, "image_s", 1.0)
    later["created"], later["run_id"] = "3000-01-01T00:00:00+00:00", "later"
    assert gate(later, hist, 0.10)["baseline_run_id"] == result["run_id"]


def _readme_ci_command() -> list[str]:
    """The regression-gate line of the README's bench section, as written."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("edgeldm bench ") and "--gate" in ln)
    return line.split("#")[0].split()[1:]


def test_the_readme_ci_example_fails_on_a_result_made_30_percent_slower(tiny_bundle, tmp_path, monkeypatch, capsys):
    argv = _readme_ci_command()
    assert argv[:2] == ["bench", "bundles/tiny"] and "--history" in argv and "--gate" in argv
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "tiny").symlink_to(tiny_bundle, target_is_directory=True)
    history = tmp_path / argv[argv.index("--history") + 1]
    assert main(["-q", *argv]) == 0  # the first run on this device is the baseline
    (first,) = history.rglob("*.json")
    baseline = json.loads(first.read_text())
    # the next result is 30 % slower than the baseline: make the baseline's figures 1/1.3 of what they were
    for figure in GATED_FIGURES:
        value = baseline["figures"][figure]
        if isinstance(value, dict):
            for key in ("median", "p90", "min", "max"):
                value[key] /= 1.3
        elif value is not None:  # a component's peak is None where the OS cannot tell it
            baseline["figures"][figure] = value / 1.3
    first.write_text(json.dumps(baseline))
    capsys.readouterr()
    assert main(["-q", *argv]) == 1
    assert "regression beyond 10%" in capsys.readouterr().err
    results = [d for _, d in load_results(history)]
    assert len(results) == 2 and results[-1]["gate"]["passed"] is False

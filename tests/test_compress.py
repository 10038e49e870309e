"""`edgeldm compress` / `edgeldm demo`: recipe validation, gates, resume after an interruption, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeldm.cli import main
from edgeldm.errors import EdgeLDMError
from edgeldm.stages.recipe import load_recipe, parse_gate, shipped_recipes

# a whole pipeline in under two minutes on 2 cores: every stage shrunk to a few steps
SMALL = """\
name: small
description: every stage kind, shrunk for a test
stages:
  - prune: {remove: 2, samples: 2, steps: 2}
  - finetune: {steps: 2, batch-size: 4, teacher-samples: 8, scene-samples: 0}
  - export: {backend: onnx}
  - quantize:
      backend: onnx
      scheme: dynamic
      calib-samples: 4
      image-prompts: 2
      min-psnr: 10
    gate: output_psnr_min >= 10
  - evaluate: {prompts: 4}
    gate: joint_accuracy >= 0.0 * baseline
  - bench: {repeat: 1, warmup: 0, quality-prompts: 0}
"""


def _recipe(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(shipped_recipes()))
def test_shipped_recipes_validate(name):
    recipe = load_recipe(name)
    assert recipe.stages and recipe.description
    kinds = [s.kind for s in recipe.stages]
    assert "export" in kinds and kinds.index("export") < len(kinds)


def test_tiny_demo_has_every_stage_of_the_issue():
    kinds = [s.kind for s in load_recipe("tiny-demo").stages]
    for kind in ("prune", "finetune", "distill", "export", "quantize", "evaluate", "bench"):
        assert kind in kinds
    assert kinds.index("prune") < kinds.index("finetune") < kinds.index("distill") < kinds.index("export") \
        < kinds.index("quantize")


@pytest.mark.parametrize("body, message", [
    ("  - prune: {target-macs: 0.65, sampels: 4}\n", r"r\.yaml:4: .*no option 'sampels'.*did you mean 'samples'"),
    ("  - prune:\n      target-macs: lots\n", r"r\.yaml:5: target-macs must be float"),
    ("  - prune: {strategy: clever}\n", r"r\.yaml:4: strategy must be one of"),
    ("  - prune: {output: x}\n", r"r\.yaml:4: 'output' is set by `edgeldm compress`"),
    ("  - prune: {target-macs: 0.6, remove: 3}\n", r"r\.yaml:4: remove and target-macs exclude each other"),
    ("  - prune: {iterative: 3}\n", r"r\.yaml:4: iterative is a switch"),
    ("  - prnue: {}\n", r"r\.yaml:4: unknown stage 'prnue'.*did you mean 'prune'"),
    ("  - export: {}\n    gate: joint_accuracy >= 0.9\n", r"r\.yaml:5: an? export stage has no metric"),
    ("  - export: {}\n    gate: validation_psnr_min >= 0.9 * baseline\n", r"r\.yaml:5: .*has no baseline"),
    ("  - export: {}\n    gate: validation_psnr_min is high\n", r"r\.yaml:5: gate .* is not 'METRIC OP VALUE'"),
    ("  - quantize: {backend: onnx, scheme: dynamic}\n", r"r\.yaml:4: a quantize stage needs a bundle"),
    ("  - export: {}\n  - distill: {}\n", r"r\.yaml:5: a distill stage needs a model"),
    ("  - distill-vae: {chanels: 8}\n", r"r\.yaml:4: .*no option 'chanels'.*did you mean 'channels'"),
])
def test_recipe_errors_name_the_line_and_the_key(tmp_path, body, message):
    path = _recipe(tmp_path, "name: bad\ndescription: x\nstages:\n" + body)
    with pytest.raises(EdgeLDMError, match="(?s)" + message):
        load_recipe(str(path))


def test_recipe_top_level_errors(tmp_path):
    with pytest.raises(EdgeLDMError, match=r":1: unknown key 'stagse'"):
        load_recipe(str(_recipe(tmp_path, "stagse: []\n")))
    with pytest.raises(EdgeLDMError, match="not valid YAML"):
        load_recipe(str(_recipe(tmp_path, "stages: [prune: {\n")))
    with pytest.raises(EdgeLDMError, match="non-empty list"):
        load_recipe(str(_recipe(tmp_path, "stages: []\n")))
    with pytest.raises(EdgeLDMError, match="(?s)no recipe 'tiny-dem'.*did you mean 'tiny-demo'"):
        load_recipe("tiny-dem")


def test_overrides_replace_options_and_are_checked(tmp_path):
    recipe = load_recipe("tiny-demo", ("finetune.steps=7", "prune.remove=2", "2.lr=0.001"))
    prune, finetune = recipe.stages[0], recipe.stages[1]
    assert prune.options.get("remove") == 2 and "target_macs" not in prune.options  # its rival is dropped
    assert finetune.options["steps"] == 7 and finetune.options["lr"] == 0.001
    assert "--steps 7" in " ".join(finetune.argv())
    with pytest.raises(EdgeLDMError, match="no stage 'finetun'"):
        load_recipe("tiny-demo", ("finetun.steps=1",))
    with pytest.raises(EdgeLDMError, match="steps must be int"):
        load_recipe("tiny-demo", ("finetune.steps=many",))
    with pytest.raises(EdgeLDMError, match="expected STAGE.KEY=VALUE"):
        load_recipe("tiny-demo", ("finetune.steps",))
    # a repeatable flag takes one value or a list, and repeats on the command line
    protect = load_recipe("tiny-demo", ("prune.protect=*.attn2",)).stages[0]
    assert protect.options["protect"] == ["*.attn2"] and "--protect *.attn2" in " ".join(protect.argv())


def test_a_repeatable_option_takes_a_yaml_list(tmp_path):
    recipe = load_recipe(str(_recipe(tmp_path, "stages:\n  - prune:\n      protect: ['*.attn2', mid_block]\n"
                                                "  - export:\n")))
    assert recipe.stages[0].argv() == ["--protect", "*.attn2", "--protect", "mid_block"]


def test_gates_compare_with_numbers_and_baselines():
    g = parse_gate("joint_accuracy >= 0.95 * baseline", "evaluate", "here")
    assert g.check({"joint_accuracy": 0.9}, {"joint_accuracy": 0.96})[0] is False
    assert g.check({"joint_accuracy": 0.92}, {"joint_accuracy": 0.96})[0] is True
    ok, message = parse_gate("unet_step_latency <= baseline * 0.6", "bench", "here").check(
        {"unet_step_latency": 0.5}, {"unet_step_latency": 1.0})
    assert ok and "meets <= 0.6" in message
    assert parse_gate("output_psnr_min >= 30", "quantize", "here").check({"output_psnr_min": 29.9}, {})[0] is False
    assert parse_gate("fd < baseline", "evaluate", "here").bound({"fd": 30.0}) == 30.0
    # distill without validation has no ODE PSNR: a gate on it fails and says why, for None or a NaN
    gate = parse_gate("ode_psnr_1step >= 20", "distill", "here")
    for unmeasured in ({"ode_psnr_1step": None}, {"ode_psnr_1step": float("nan")}, {}):
        ok, message = gate.check(unmeasured, {})
        assert ok is False and "not measured" in message


def test_compress_check_prints_the_plan_and_refuses_existing_output(tmp_path, capsys):
    assert main(["--quiet", "compress", "tiny", "--recipe", "tiny-demo", "-o", str(tmp_path / "x"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "1. prune" in out and "gate: joint_accuracy" in out
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "run.json").write_text("{}")
    assert main(["--quiet", "compress", "tiny", "--recipe", "tiny-demo", "-o", str(tmp_path / "exists")]) == 1
    assert "already exists" in capsys.readouterr().err
    # --overwrite deletes only a folder that a compress run made
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    assert main(["--quiet", "compress", "tiny", "--recipe", "tiny-demo", "-o", str(tmp_path / "mine"),
                 "--overwrite"]) == 1
    assert "not an `edgeldm compress` run folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    assert main(["--quiet", "demo", "-o", str(tmp_path / "d"), "--set", "bogus.steps=1"]) == 1
    assert "no stage 'bogus'" in capsys.readouterr().err


# --- a whole run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
    """Run SMALL on tiny, interrupted during export (Ctrl-C), then resumed; counts the stage executions."""
    import edgeldm.stages.runner as compress_mod

    tmp = tmp_path_factory.mktemp("compress")
    recipe = _recipe(tmp, SMALL, "small.yaml")
    out = tmp / "run"
    calls: list[str] = []
    real = dict(compress_mod._STAGE_RUNNERS)

    def counting(kind):
        def run(state, stage, sdir, inp):
            calls.append(kind)
            return real[kind](state, stage, sdir, inp)
        return run

    def interrupt(state, stage, sdir, inp):
        calls.append("export-interrupted")
        raise KeyboardInterrupt

    patched = {k: counting(k) for k in real}
    mp = pytest.MonkeyPatch()
    mp.setattr(compress_mod, "_STAGE_RUNNERS", {**patched, "export": interrupt})
    code_interrupted = main(["--quiet", "compress", "tiny", "--recipe", str(recipe), "-o", str(out)])
    record_after_interrupt = json.loads((out / "03-export" / "stage.json").read_text())
    half_written = [p.name for p in (out / "03-export").iterdir() if p.name not in ("stage.json", "log.txt")]
    first_calls = list(calls)
    prune_digest = json.loads((out / "01-prune" / "stage.json").read_text())["artifact_digest"]
    mp.setattr(compress_mod, "_STAGE_RUNNERS", patched)
    calls.clear()
    code_resumed = main(["--quiet", "compress", "tiny", "--recipe", str(recipe), "-o", str(out), "--resume"])
    resumed_calls = list(calls)
    calls.clear()
    code_again = main(["--quiet", "compress", "tiny", "--recipe", str(recipe), "-o", str(out), "--resume"])
    again_calls = list(calls)
    mp.undo()
    return {"out": out, "recipe": recipe, "codes": (code_interrupted, code_resumed, code_again),
            "first": first_calls, "resumed": resumed_calls, "again": again_calls,
            "interrupted_record": record_after_interrupt, "half_written": half_written, "prune_digest": prune_digest}


def test_an_interrupted_run_resumes_without_redoing_finished_stages(interrupted_then_resumed):
    r = interrupted_then_resumed
    assert r["codes"] == (130, 0, 0)
    assert r["first"] == ["prune", "finetune", "export-interrupted"]
    assert r["interrupted_record"]["status"] == "interrupted"
    assert r["half_written"] == []  # no half-written artifact
    assert r["resumed"] == ["export", "quantize", "evaluate", "bench"]  # prune and finetune were reused
    assert r["again"] == []  # everything unchanged: nothing runs
    record = json.loads((r["out"] / "01-prune" / "stage.json").read_text())
    assert record["status"] == "done" and record["artifact_digest"] == r["prune_digest"]


def test_stage_records_metrics_and_gates(interrupted_then_resumed):
    out = interrupted_then_resumed["out"]
    quant = json.loads((out / "04-quantize" / "stage.json").read_text())
    assert quant["metrics"]["output_psnr_min"] >= 10 and quant["gates"][0]["ok"]
    prune = json.loads((out / "01-prune" / "stage.json").read_text())
    assert prune["metrics"]["operators"] == 2 and 0 < prune["metrics"]["macs_kept"] < 1
    ev = json.loads((out / "05-evaluate" / "stage.json").read_text())
    assert set(ev["baseline"]) >= {"joint_accuracy", "fd"} and 0 <= ev["metrics"]["joint_accuracy"] <= 1
    bench = json.loads((out / "06-bench" / "bench.json").read_text())
    assert bench["config"]["steps"] == 25 and bench["vs"]["config"]["steps"] == 25
    assert bench["vs"]["target"]["kind"] == "diffusers" and bench["ratios"]["image_s"]["median"] > 0
    assert (out / "01-prune" / "log.txt").read_text().strip()
    assert list((out / "cache" / "teacher").glob("teacher-latents-*.pt"))  # the finetune's, for later stages


def test_final_bundle_carries_the_recipe_and_runs(interrupted_then_resumed, tmp_path):
    out = interrupted_then_resumed["out"]
    manifest = json.loads((out / "bundle" / "edgeldm.json").read_text())
    assert manifest["recipe"]["name"] == "small" and manifest["recipe"]["text"] == SMALL
    assert [s["stage"] for s in manifest["recipe"]["stages"]] == ["prune", "finetune", "export", "quantize",
                                                                  "evaluate", "bench"]
    assert manifest["quantization"]["scheme"] == "dynamic"
    png = tmp_path / "x.png"
    assert main(["--quiet", "run", str(out / "bundle"), "--prompt", "a red circle", "-o", str(png)]) == 0
    assert png.stat().st_size > 0


def test_report_renders_with_its_pictures(interrupted_then_resumed):
    from PIL import Image

    report = interrupted_then_resumed["out"] / "report"
    md = (report / "report.md").read_text()
    assert "| original (model) |" in md and "04-quantize (bundle)" in md
    assert "contact_sheet.png" in md and "latency_quality.png" in md
    html = (report / "report.html").read_text()
    assert "<table>" in html and "contact_sheet.png" in html
    for png in ("contact_sheet.png", "latency_quality.png"):
        with Image.open(report / png) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    summary = json.loads((report / "summary.json").read_text())
    head = summary["headline"]
    assert head["final"] == "04-quantize" and 0 < head["size_ratio"] < 1 and head["speedup_per_image"] > 0


def test_a_failing_gate_stops_and_keeps_everything(interrupted_then_resumed, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(interrupted_then_resumed["out"], out)
    strict = _recipe(tmp_path, SMALL.replace("joint_accuracy >= 0.0 * baseline", "joint_accuracy >= 2 * baseline"))
    # gates are not part of a stage's key: the resumed run reuses every measurement and only re-judges it
    assert main(["--quiet", "compress", "tiny", "--recipe", str(strict), "-o", str(out), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "quality gate failed" in err and "joint_accuracy" in err and "FAILS" in err
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["failed_at"] == "05-evaluate" and summary["final_bundle"] is None
    assert (out / "04-quantize" / "bundle" / "edgeldm.json").is_file()  # nothing made so far is lost
    assert "a quality gate failed" in (out / "report" / "report.md").read_text()


def test_teacher_original_names_the_model_the_run_started_from(tiny_random_dir, tmp_path):
    from edgeldm.lineage import read_lineage

    recipe = _recipe(tmp_path, """\
name: taught
description: a pruned student taught by the unpruned model
stages:
  - prune: {remove: 2, samples: 2, steps: 2, latency-repeat: 0}
  - distill: {teacher: original, steps: 1, batch-size: 2, teacher-samples: 2, validate-every: 0}
""")
    out = tmp_path / "run"
    assert main(["--quiet", "compress", str(tiny_random_dir), "--recipe", str(recipe), "-o", str(out)]) == 0
    model = out / "02-distill" / "model"
    assert read_lineage(model)["distill"]["teacher"] == str(tiny_random_dir.resolve())
    record = json.loads((out / "02-distill" / "stage.json").read_text())
    argv = record.get("argv") or record.get("command") or ""
    assert str(tiny_random_dir) in json.dumps(argv) and '"original"' not in json.dumps(argv)


def test_a_distill_vae_stage_swaps_the_vae_and_gates_on_its_psnr(tiny_random_dir, tmp_path):
    recipe = _recipe(tmp_path, """\
name: small-vae
description: a tiny VAE in place of the model's, then a bundle
stages:
  - distill-vae: {steps: 2, batch-size: 2, teacher-samples: 8}
    gate: decoder_psnr >= 0
  - export: {backend: onnx}
""")
    out = tmp_path / "run"
    assert main(["--quiet", "compress", str(tiny_random_dir), "--recipe", str(recipe), "-o", str(out)]) == 0
    record = json.loads((out / "01-distill-vae" / "stage.json").read_text())
    assert record["metrics"]["decoder_psnr"] > 0 and record["gates"][0]["ok"]
    assert json.loads((out / "bundle" / "vae_decoder" / "config.json").read_text())["_class_name"] == "AutoencoderTiny"


def test_a_changed_prune_budget_reselects_from_the_runs_scores(tiny_random_dir, tmp_path, monkeypatch):
    from edgeldm.compressor.ldpruner import ScoreCache

    scored: list[str] = []
    real_put = ScoreCache.put
    monkeypatch.setattr(ScoreCache, "put", lambda self, cand: (scored.append(cand.op), real_put(self, cand))[1])
    out = tmp_path / "run"
    prune = "stages:\n  - prune: {{remove: {}, samples: 2, steps: 2, latency-repeat: 0}}\n"
    first = _recipe(tmp_path, "name: p\n" + prune.format(2))
    assert main(["--quiet", "compress", str(tiny_random_dir), "--recipe", str(first), "-o", str(out)]) == 0
    assert scored and (out / "cache" / "scores").is_dir()
    kept = json.loads((out / "01-prune" / "stage.json").read_text())["metrics"]["macs_kept"]
    n_scored = len(scored)
    scored.clear()
    # another budget: the stage's key changes and its folder is redone, but every score is reused
    second = _recipe(tmp_path, "name: p\n" + prune.format(4), "r2.yaml")
    assert main(["--quiet", "compress", str(tiny_random_dir), "--recipe", str(second), "-o", str(out),
                 "--resume"]) == 0
    assert scored == [], f"{len(scored)} of {n_scored} candidates scored again"
    record = json.loads((out / "01-prune" / "stage.json").read_text())
    assert record["metrics"]["operators"] == 4 and record["metrics"]["macs_kept"] < kept

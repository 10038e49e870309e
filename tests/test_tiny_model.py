"""Integration: the embedded trained model `tiny` loads like a user's folder, generates, and evaluates reproducibly."""

import json

import numpy as np
import pytest
from PIL import Image

from edgeldm import load_pipeline
from edgeldm.benchmarks.evaluate import EvalConfig, evaluate_pipeline
from edgeldm.cli import main
from edgeldm.loading import resolve_source
from edgeldm.zoo import ZOO


@pytest.fixture(scope="module")
def tiny():
    return load_pipeline("tiny")


def test_tiny_is_a_shipped_diffusers_folder_loaded_by_the_folder_code_path(tiny, monkeypatch):
    entry = ZOO["tiny"]
    assert entry.kind == "checkpoint"
    kind, path = resolve_source("tiny")
    assert kind == "checkpoint" and path == entry.folder
    calls = []
    import edgeldm.loading as loading

    real = loading.load_pipeline_folder
    monkeypatch.setattr(loading, "load_pipeline_folder", lambda p, **kw: calls.append(p) or real(p, **kw))
    load_pipeline("tiny")
    assert calls == [entry.folder]
    assert sum(f.stat().st_size for f in entry.folder.rglob("*") if f.is_file()) <= 25 * 2**20


def test_tiny_has_the_sd_architecture(tiny):
    unet, vae, te = tiny.unet, tiny.vae, tiny.text_encoder
    assert vae.config.latent_channels == 4 and 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert vae.config.scaling_factor != 0.18215  # measured from the data, not SD's constant
    assert {"CrossAttnDownBlock2D", "DownBlock2D"} <= set(unet.config.down_block_types)
    assert {"CrossAttnUpBlock2D", "UpBlock2D"} <= set(unet.config.up_block_types)
    assert unet.config.mid_block_type == "UNetMidBlock2DCrossAttn"
    assert unet.config.layers_per_block >= 2 and len(unet.config.block_out_channels) >= 3
    assert tiny.tokenizer.model_max_length == 77 and len(tiny.tokenizer) == 49408
    assert te.config.max_position_embeddings == 77
    sched = tiny.scheduler.config
    assert (sched.beta_start, sched.beta_end, sched.beta_schedule, sched.num_train_timesteps,
            sched.prediction_type) == (0.00085, 0.012, "scaled_linear", 1000, "epsilon")


def test_eval_is_deterministic_and_reports_the_documented_keys(tiny):
    config = EvalConfig(prompts=12, steps=8, guidance=7.5, seed=0, batch_size=6, reference_images=100)
    a = evaluate_pipeline(tiny, config, model_name="tiny").metrics
    b = evaluate_pipeline(tiny, config, model_name="tiny").metrics
    assert a["accuracy"] == b["accuracy"] and a["fd"] == b["fd"]
    assert set(a["accuracy"]) == {"shape", "color", "position", "size", "joint"}
    assert a["images"] == 12 and a["steps"] == 8
    # a trained model: far better than chance (shape 25 %, colour 17 %) even at 8 steps
    assert a["accuracy"]["color"] > 0.5 and a["accuracy"]["shape"] > 0.4


def test_cli_eval_json_and_contact_sheet(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["--quiet", "eval", "tiny", "--prompts", "4", "--steps", "4", "--json", "--sheet", str(sheet)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 4 and metrics["steps"] == 4 and "fd" in metrics
    img = Image.open(sheet)
    assert img.width > 4 * 128 and np.asarray(img).std() > 10


def test_cli_generate_writes_a_png_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "red.png"
    args = ["--quiet", "generate", "tiny", "--prompt", "a large red circle in the center on a white background",
            "--steps", "10", "-o", str(out)]
    assert main(args) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (64, 64, 3)
    assert main(args) == 1 and "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--scheduler", "euler"]) == 0


def test_cli_generate_rejects_unknown_model(capsys):
    assert main(["generate", "no-such-model", "--prompt", "x", "-o", "x.png"]) == 1
    assert "zoo models" in capsys.readouterr().err

"""#26 groundwork: checkpoints in the original single-file layout, written by the tests' own converter and read
back by diffusers' single-file loader with edgeldm's embedded configs, offline."""

from pathlib import Path

import pytest

from original_layout import original_state_dict


@pytest.fixture(scope="module")
def tiny_random_file(tmp_path_factory):
    from safetensors.torch import save_file

    from edgeldm.loading import load_pipeline
    from edgeldm.zoo import save_zoo_model

    tmp = tmp_path_factory.mktemp("single-file")
    save_zoo_model("tiny-random", tmp / "folder")
    pipe = load_pipeline(tmp / "folder")
    state = original_state_dict(pipe)
    save_file(state, tmp / "tiny-random.safetensors")
    return pipe, state, tmp


def test_the_converter_writes_the_layout_diffusers_reads(tiny_random_file):
    from diffusers import StableDiffusionPipeline
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    pipe, state, tmp = tiny_random_file
    assert infer_diffusers_model_type(state) == "v1"
    assert all(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in state)
    loaded = StableDiffusionPipeline.from_single_file(str(tmp / "tiny-random.safetensors"), config=str(tmp / "folder"),
                                                      local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert set(a) == set(b), name
        assert all(bool((a[k] == b[k]).all()) for k in a), name  # bit-exact: every weight found its place


def test_a_single_file_loads_as_its_folder_does(tiny_random_file):
    from edgeldm.loading import load_pipeline

    pipe, _, tmp = tiny_random_file
    loaded = load_pipeline(tmp / "tiny-random.safetensors")
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(bool((a[k] == b[k]).all()) for k in a), name


def test_info_reports_the_folders_parameters_and_macs(tiny_random_file):
    from edgeldm.info import describe_model

    _, _, tmp = tiny_random_file
    file, folder = describe_model(str(tmp / "tiny-random.safetensors")), describe_model(str(tmp / "folder"))
    params = [{k: v["parameters"] for k, v in d["components"].items() if "parameters" in v} for d in (file, folder)]
    assert params[0] == params[1] and set(params[0]) == {"text_encoder", "unet", "vae"}
    assert file["unet"]["macs_per_step"] == folder["unet"]["macs_per_step"] > 0


def test_export_and_run_give_the_folders_image(tiny_random_file):
    import numpy as np

    import edgeldm
    from edgeldm.runtimes.text2image import Text2Image

    _, _, tmp = tiny_random_file
    images = []
    for source, out in ((tmp / "tiny-random.safetensors", tmp / "b-file"), (tmp / "folder", tmp / "b-folder")):
        edgeldm.export(source, out, backend=("onnx",))
        images.append(np.asarray(Text2Image(out)("a red circle", steps=3, seed=1), dtype=np.float64))
    mse = np.mean((images[0] - images[1]) ** 2)
    assert mse == 0 or 10 * np.log10(255.0 ** 2 / mse) >= 40


def test_prune_accepts_the_file(tiny_random_file, capsys):
    from edgeldm.cli import main

    _, _, tmp = tiny_random_file
    assert main(["--quiet", "prune", str(tmp / "tiny-random.safetensors"), "-o", str(tmp / "pruned"), "--remove",
                 "1", "--samples", "2", "--steps", "2", "--latency-repeat", "0"]) == 0
    assert (tmp / "pruned" / "unet" / "edgeldm_pruning.json").is_file()


def test_compress_accepts_the_file_and_writes_nothing_beside_it(tiny_random_file, tmp_path):
    import json

    import edgeldm

    _, _, tmp = tiny_random_file
    before = sorted(p.name for p in tmp.iterdir())
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: file\nstages:\n  - prune: {remove: 1, samples: 2, steps: 2, latency-repeat: 0}\n"
                      "  - export: {backend: onnx}\n")
    summary = edgeldm.compress(tmp / "tiny-random.safetensors", recipe, tmp_path / "run")
    bundle = Path([r["path"] for r in summary["rows"] if r["kind"] == "bundle"][-1])
    assert json.loads((bundle / "edgeldm.json").read_text())["components"]["unet"]
    assert sorted(p.name for p in tmp.iterdir()) == before


@pytest.mark.parametrize("make, message", [
    ("foreign", "match no Stable Diffusion single-file layout"),
    ("truncated", "not a readable safetensors file"),
    ("pickle", "pickled checkpoint"),
])
def test_bad_single_files_get_one_line_and_nothing_is_written(tiny_random_file, tmp_path, capsys, make, message):
    import numpy as np
    from safetensors.numpy import save_file

    from edgeldm.cli import main

    _, _, tmp = tiny_random_file
    if make == "foreign":
        bad = tmp_path / "lora.safetensors"
        save_file({"lora_unet_down.alpha": np.ones(1, np.float32)}, str(bad))
    elif make == "truncated":
        bad = tmp_path / "cut.safetensors"
        bad.write_bytes((tmp / "tiny-random.safetensors").read_bytes()[:5000])
    else:
        bad = tmp_path / "model.ckpt"
        bad.write_bytes(b"\x80\x04not really a pickle")
    out = tmp_path / "bundle"
    assert main(["export", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


def test_convert_writes_a_diffusers_folder_with_its_lineage(tiny_random_file, tmp_path):
    import json

    import edgeldm
    from edgeldm.cli import main
    from edgeldm.loading import load_pipeline
    from edgeldm.manifest import sha256_file

    pipe, _, tmp = tiny_random_file
    file = tmp / "tiny-random.safetensors"
    before = sorted(p.name for p in tmp.iterdir())
    assert main(["--quiet", "convert", str(file), "-o", str(tmp_path / "out"), "--prediction-type",
                 "v_prediction"]) == 0
    assert sorted(p.name for p in tmp.iterdir()) == before  # nothing written beside the input
    lineage = json.loads((tmp_path / "out" / "edgeldm_source.json").read_text())
    assert lineage["stage"] == "convert" and lineage["source_sha256"] == sha256_file(file)
    scheduler = json.loads((tmp_path / "out" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    again = load_pipeline(tmp_path / "out")
    a, b = pipe.unet.state_dict(), again.unet.state_dict()
    assert all(bool((a[k] == b[k]).all()) for k in a)
    with pytest.raises(edgeldm.OutputExistsError):
        edgeldm.convert(file, tmp_path / "out")


def test_a_ckpt_loads_only_when_pickles_are_allowed(tiny_random_file, tmp_path):
    import torch

    from edgeldm.errors import PickledWeightsError
    from edgeldm.loading import load_pipeline

    pipe, state, _ = tiny_random_file
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, ckpt)  # the usual wrapping of the original checkpoints
    with pytest.raises(PickledWeightsError, match="--allow-pickle"):
        load_pipeline(ckpt)
    loaded = load_pipeline(ckpt, allow_pickle=True)
    a, b = pipe.vae.state_dict(), loaded.vae.state_dict()
    assert all(bool((a[k] == b[k]).all()) for k in a)


@pytest.mark.parametrize("preset", ["sd15", "sd21-base"])
def test_a_preset_written_as_a_single_file_loads_bit_exact_with_the_same_info(preset, tmp_path):
    """The SD 1.5 (CLIP) and SD 2.x (OpenCLIP: fused in_proj, 24 layers of which the last goes unused) layouts at
    full size, in fp16 as most shared files are: the file finds its architecture, every weight its place."""
    import torch
    from safetensors.torch import save_file

    from edgeldm.info import describe_model
    from edgeldm.loading import load_pipeline

    pipe = load_pipeline(preset, dtype=torch.float16)
    file = tmp_path / f"{preset}.safetensors"
    save_file({k: v.half() for k, v in original_state_dict(pipe).items()}, str(file))
    loaded = load_pipeline(file, dtype=torch.float16)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert set(a) == set(b), name
        assert all(bool((a[k].half() == b[k]).all()) for k in a), name
    del pipe, loaded
    ours, theirs = describe_model(str(file)), describe_model(preset)
    assert ours["unet"]["macs_per_step"] == theirs["unet"]["macs_per_step"] > 0
    params = [{k: v["parameters"] for k, v in d["components"].items() if "parameters" in v} for d in (ours, theirs)]
    assert params[0] == params[1]


def _ldm_yaml(path, parameterization, in_channels=4, context_dim=32):
    path.write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n"
                    f"    parameterization: {parameterization}\n    unet_config:\n      params:\n"
                    f"        in_channels: {in_channels}\n        context_dim: {context_dim}\n")
    return path


def test_the_original_config_sets_the_prediction_type_and_is_checked(tiny_random_file, tmp_path, capsys):
    import json
    import shutil

    from edgeldm.cli import main
    from edgeldm.loading import load_pipeline

    pipe, _, tmp = tiny_random_file
    width = pipe.unet.config.cross_attention_dim
    yaml = _ldm_yaml(tmp_path / "v2-inference-v.yaml", '"v"', context_dim=width)
    assert main(["--quiet", "convert", str(tmp / "tiny-random.safetensors"), "-o", str(tmp_path / "v"),
                 "--original-config", str(yaml)]) == 0
    config = json.loads((tmp_path / "v" / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction"
    # the A1111 habit: model.yaml beside model.safetensors is picked up
    shutil.copy(tmp / "tiny-random.safetensors", tmp_path / "model.safetensors")
    _ldm_yaml(tmp_path / "model.yaml", "v", context_dim=width)
    assert main(["--quiet", "convert", str(tmp_path / "model.safetensors"), "-o", str(tmp_path / "beside")]) == 0
    assert json.loads((tmp_path / "beside" / "scheduler" / "scheduler_config.json").read_text())[
        "prediction_type"] == "v_prediction"
    wrong = _ldm_yaml(tmp_path / "inpaint.yaml", "eps", in_channels=9, context_dim=width)
    assert main(["convert", str(tmp / "tiny-random.safetensors"), "-o", str(tmp_path / "x"),
                 "--original-config", str(wrong)]) == 1
    assert "in_channels 9; the weights have 4" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert load_pipeline(tmp_path / "v").scheduler.config.prediction_type == "v_prediction"


def test_an_inpainting_file_is_converted_and_refused_by_the_compression_stages(tiny_random_file, tmp_path, capsys):
    """A 9-channel conv_in (latents, mask, masked-image latents): info and convert take it (the inpainting
    pipeline class, the UNet widened; export too, tests/test_img2img.py), the compression stages say they do not
    yet."""
    import json

    import torch
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
    from safetensors.torch import save_file

    from edgeldm.cli import main
    from edgeldm.info import describe_model
    from original_layout import original_state_dict

    pipe, _, _ = tiny_random_file
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**pipe.unet.config, "in_channels": 9})
    pipe_9 = StableDiffusionInpaintPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                            unet=unet, scheduler=pipe.scheduler, safety_checker=None,
                                            feature_extractor=None, requires_safety_checker=False)
    file = tmp_path / "inpaint.safetensors"
    save_file(original_state_dict(pipe_9), str(file))
    info = describe_model(str(file))
    assert info["components"]["unet"]["parameters"] == sum(p.numel() for p in unet.parameters())
    assert main(["--quiet", "convert", str(file), "-o", str(tmp_path / "folder")]) == 0
    assert json.loads((tmp_path / "folder" / "model_index.json").read_text())["_class_name"] == \
        "StableDiffusionInpaintPipeline"
    loaded = StableDiffusionInpaintPipeline.from_pretrained(str(tmp_path / "folder"), local_files_only=True)
    assert all(torch.equal(loaded.unet.state_dict()[k], v) for k, v in unet.state_dict().items())
    capsys.readouterr()
    assert main(["distill", str(file), "-o", str(tmp_path / "student"), "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "inpainting model" in err and "Traceback" not in err
    assert not (tmp_path / "student").exists()
    # the folder convert wrote is edgeldm's own input again: described, converted, refused by the other stages
    assert describe_model(str(tmp_path / "folder"))["components"]["unet"]["parameters"] == \
        info["components"]["unet"]["parameters"]
    assert main(["prune", str(tmp_path / "folder"), "-o", str(tmp_path / "pruned"), "--remove", "1"]) == 1
    err = capsys.readouterr().err
    assert "inpainting model" in err and "Traceback" not in err
    assert not (tmp_path / "pruned").exists()

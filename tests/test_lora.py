"""#26: LoRA adapters fused by ``edgeldm convert --lora`` (diffusers / PEFT and kohya keys) give diffusers' own
``load_lora_weights`` + ``fuse_lora`` result; wrong adapters get one line and nothing is written."""

import json

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """A PEFT LoRA on tiny's UNet and text encoder, saved in the diffusers format and in kohya's key names."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    from edgeldm.loading import load_pipeline

    tmp = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    pipe = load_pipeline("tiny")
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    pipe.text_encoder.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                             target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    with torch.no_grad():  # PEFT starts B at zero (a no-op adapter); a trained one is not
        for module in (pipe.unet, pipe.text_encoder):
            for name, weight in module.named_parameters():
                if "lora_B" in name:
                    weight.normal_(0, 0.05)
    StableDiffusionPipeline.save_lora_weights(tmp / "diffusers", unet_lora_layers=get_peft_model_state_dict(pipe.unet),
                                              text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder))
    diffusers_file = tmp / "diffusers" / "pytorch_lora_weights.safetensors"
    # kohya's SD 1.x names: lora_unet_* and lora_te_* (diffusers' converter writes te1 for the first encoder)
    kohya = {k.replace("lora_te1_", "lora_te_"): v
             for k, v in convert_state_dict_to_kohya(load_file(str(diffusers_file))).items()}
    save_file(kohya, str(tmp / "style_kohya.safetensors"))
    return {"diffusers": diffusers_file, "kohya": tmp / "style_kohya.safetensors", "tmp": tmp}


def _reference(path, scale):
    """diffusers' own fusing, the way its docs show it."""
    from edgeldm.loading import load_pipeline

    pipe = load_pipeline("tiny")
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="ref")
    pipe.fuse_lora(lora_scale=scale, adapter_names=["ref"])
    pipe.unload_lora_weights()
    return pipe


def _image(pipe):
    import torch

    g = torch.Generator().manual_seed(3)
    out = pipe("a red circle on the left", num_inference_steps=4, generator=g, output_type="np")
    return out.images[0].astype(np.float64) * 255


def _psnr(a, b):
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.mark.parametrize("fmt, scale", [("kohya", 1.0), ("kohya", 0.4), ("diffusers", 0.4)])
def test_convert_lora_gives_diffusers_own_fused_image(adapters, tmp_path, fmt, scale):
    from edgeldm.cli import main
    from edgeldm.loading import load_pipeline
    from edgeldm.manifest import sha256_file

    out = tmp_path / "styled"
    assert main(["--quiet", "convert", "tiny", "-o", str(out), "--lora", f"{adapters[fmt]}:{scale}"]) == 0
    ours, ref = load_pipeline(out), _reference(adapters["diffusers"], scale)
    assert _psnr(_image(ours), _image(ref)) >= 40
    assert _psnr(_image(ours), _image(load_pipeline("tiny"))) < 40  # the adapter did change the model
    lora = json.loads((out / "edgeldm_source.json").read_text())["adapters"]["lora"]
    assert lora == [{"name": adapters[fmt].name, "sha256": sha256_file(adapters[fmt]), "scale": scale,
                     "format": fmt, "layers": {"unet": 88, "text_encoder": 8}}]


def test_the_bundle_manifest_records_the_adapters(adapters, tmp_path):
    import edgeldm

    edgeldm.convert("tiny", tmp_path / "styled", lora=(f"{adapters['kohya']}:0.5",))
    edgeldm.export(tmp_path / "styled", tmp_path / "bundle", backend=("onnx",))
    manifest = json.loads((tmp_path / "bundle" / "edgeldm.json").read_text())
    assert manifest["source"]["adapters"]["lora"][0]["scale"] == 0.5
    assert manifest["source"]["adapters"]["lora"][0]["name"] == "style_kohya.safetensors"


@pytest.mark.parametrize("make, message", [
    ("no-match", "match no module of the model"),
    ("sdxl", "SDXL LoRA"),
    ("wide", "2048 wide (SDXL)"),
    ("scale", "is not a number"),
    ("foreign", "match no LoRA format"),
    ("missing", "does not exist"),
])
def test_bad_adapters_get_one_line_and_nothing_is_written(adapters, tmp_path, capsys, make, message):
    import torch
    from safetensors.torch import load_file, save_file

    from edgeldm.cli import main

    kohya = load_file(str(adapters["kohya"]))
    bad = tmp_path / f"{make}.safetensors"
    arg = str(bad)
    if make == "no-match":
        save_file({"lora_unet_nothing_here.lora_down.weight": torch.zeros(4, 8),
                   "lora_unet_nothing_here.lora_up.weight": torch.zeros(8, 4)}, str(bad))
    elif make == "sdxl":  # an SDXL adapter names its second text encoder lora_te2_
        save_file({**kohya, **{k.replace("lora_te_", "lora_te2_"): v.clone() for k, v in kohya.items()
                               if k.startswith("lora_te_")}}, str(bad))
    elif make == "wide":
        save_file({k: (torch.zeros(v.shape[0], 2048) if "attn2_to_k.lora_down" in k else v)
                   for k, v in kohya.items()}, str(bad))
    elif make == "scale":
        arg = f"{adapters['kohya']}:strong"
    elif make == "foreign":
        save_file({"weight": torch.zeros(2)}, str(bad))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    if make == "scale":  # a usage error, as argparse reports them
        with pytest.raises(SystemExit) as exit_:
            main(["convert", "tiny", "-o", str(out), "--lora", arg])
        assert exit_.value.code == 2
    else:
        assert main(["convert", "tiny", "-o", str(out), "--lora", arg]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary left


def test_a_recipe_bakes_adapters_in_its_first_stage(adapters, tmp_path):
    """``convert`` as a recipe's first stage: its LoRA reaches the bundle, recorded in the final manifest."""
    import edgeldm

    recipe = tmp_path / "styled.yaml"
    recipe.write_text("name: styled\ndescription: bake a LoRA, export\nstages:\n"
                      f"  - convert: {{lora: ['{adapters['kohya']}:0.5']}}\n"
                      "  - export: {backend: onnx}\n")
    summary = edgeldm.compress("tiny", recipe, tmp_path / "run")
    bundles = [r["path"] for r in summary["rows"] if r["kind"] == "bundle"]
    manifest = json.loads((Path(bundles[-1]) / "edgeldm.json").read_text())
    assert manifest["source"]["adapters"]["lora"][0]["scale"] == 0.5


def test_convert_swaps_in_a_replacement_vae_from_a_file_or_a_folder(tmp_path):
    import torch
    from safetensors.torch import save_file

    import edgeldm
    from edgeldm.loading import load_pipeline
    from original_layout import vae_state_dict

    pipe = load_pipeline("tiny")
    with torch.no_grad():
        for weight in pipe.vae.parameters():
            weight.add_(0.01)  # a "finetuned" VAE
    file = tmp_path / "vae-ft.safetensors"
    save_file({k[len("first_stage_model."):]: v.contiguous()  # sd-vae-ft-mse-original ships bare LDM keys
               for k, v in vae_state_dict(pipe.vae.state_dict(), pipe.vae.config).items()}, str(file))
    pipe.vae.save_pretrained(tmp_path / "vae-folder")
    for source, out in ((file, "a"), (tmp_path / "vae-folder", "b")):
        edgeldm.convert("tiny", tmp_path / out, vae=str(source))
        got = load_pipeline(tmp_path / out).vae.state_dict()
        assert all(torch.equal(got[k], v) for k, v in pipe.vae.state_dict().items()), source
        assert json.loads((tmp_path / out / "edgeldm_source.json").read_text())["adapters"]["vae"]["name"] == source.name


def test_a_vae_with_other_latent_channels_is_refused(tmp_path, capsys):
    from diffusers import AutoencoderKL

    from edgeldm.cli import main
    from edgeldm.loading import load_pipeline

    config = dict(load_pipeline("tiny").vae.config)
    config["latent_channels"] = 16
    AutoencoderKL.from_config(config).save_pretrained(tmp_path / "vae16")
    assert main(["convert", "tiny", "-o", str(tmp_path / "out"), "--vae", str(tmp_path / "vae16")]) == 1
    err = capsys.readouterr().err
    assert "16 latent channels" in err and "takes 4" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--lora", "--vae"])
def test_a_missing_adapter_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, flag):
    """Headers and paths are checked first: a typo costs no model load (minutes for an SD 1.5 file)."""
    import edgeldm.loading
    from edgeldm.cli import main

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the adapter was checked")

    monkeypatch.setattr(edgeldm.loading, "load_pipeline", must_not_load)
    assert main(["convert", "tiny", "-o", str(tmp_path / "out"), flag, str(tmp_path / "nope.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()

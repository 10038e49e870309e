"""Every way a checkpoint folder can be wrong gets a typed error with a message that says what and where."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from edgeldm import load_pipeline
from edgeldm.cli import main
from edgeldm.errors import (
    CheckpointNotFoundError,
    CorruptWeightsError,
    MissingComponentError,
    NotADiffusersFolderError,
    PickledWeightsError,
    UnsupportedPipelineError,
    WeightShapeMismatchError,
)

from conftest import tree_digest

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def test_loads_a_valid_folder_with_the_saved_weights(tiny_random_dir, tiny_random_pipe):
    before = tree_digest(tiny_random_dir)
    pipe = load_pipeline(tiny_random_dir)
    for (k, a), b in zip(tiny_random_pipe.unet.state_dict().items(), pipe.unet.state_dict().values()):
        assert torch.equal(a, b), k
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert tree_digest(tiny_random_dir) == before  # loading never writes into the input


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_pipeline(tmp_path / "nope")


def test_folder_without_model_index(tmp_path):
    with pytest.raises(NotADiffusersFolderError, match="no model_index.json"):
        load_pipeline(tmp_path)


def test_single_file_instead_of_folder(checkpoint_copy):
    with pytest.raises(NotADiffusersFolderError, match="is a file"):
        load_pipeline(checkpoint_copy / UNET_WEIGHTS)


def test_model_index_that_is_not_json(checkpoint_copy):
    (checkpoint_copy / "model_index.json").write_text("{not json")
    with pytest.raises(NotADiffusersFolderError, match="not valid JSON"):
        load_pipeline(checkpoint_copy)


def test_missing_component_folder(checkpoint_copy):
    import shutil

    shutil.rmtree(checkpoint_copy / "vae")
    with pytest.raises(MissingComponentError, match=r"vae"):
        load_pipeline(checkpoint_copy)


def test_missing_weights_file(checkpoint_copy):
    (checkpoint_copy / UNET_WEIGHTS).unlink()
    with pytest.raises(MissingComponentError, match="no weights file"):
        load_pipeline(checkpoint_copy)


def test_unsupported_pipeline_class(checkpoint_copy):
    index_path = checkpoint_copy / "model_index.json"
    index = json.loads(index_path.read_text())
    index["_class_name"] = "StableDiffusion3Pipeline"
    index_path.write_text(json.dumps(index))
    with pytest.raises(UnsupportedPipelineError, match="StableDiffusion3Pipeline") as err:
        load_pipeline(checkpoint_copy)
    # says what is supported, every family's
    assert "StableDiffusionPipeline" in str(err.value) and "StableDiffusionXLPipeline" in str(err.value)


def test_truncated_safetensors(checkpoint_copy):
    weights = checkpoint_copy / UNET_WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptWeightsError) as err:
        load_pipeline(checkpoint_copy)
    assert "diffusion_pytorch_model.safetensors" in str(err.value) and "truncated" in str(err.value)


def test_garbage_instead_of_safetensors(checkpoint_copy):
    (checkpoint_copy / "text_encoder" / "model.safetensors").write_bytes(b"<html>404 not found</html>" * 4)
    with pytest.raises(CorruptWeightsError, match="model.safetensors"):
        load_pipeline(checkpoint_copy)


def test_weights_that_do_not_match_the_config(checkpoint_copy):
    config_path = checkpoint_copy / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["cross_attention_dim"] = 64  # weights were trained with 32
    config_path.write_text(json.dumps(config))
    with pytest.raises(WeightShapeMismatchError) as err:
        load_pipeline(checkpoint_copy)
    msg = str(err.value)
    assert "attn2.to_k.weight: file (64, 32) vs config (64, 64)" in msg and "12 tensor(s)" in msg


def test_text_encoder_with_missing_tensors(checkpoint_copy):
    from safetensors.torch import save_file

    path = checkpoint_copy / "text_encoder" / "model.safetensors"
    tensors = load_file(path)
    dropped = [k for k in tensors if "layers.4." in k]
    save_file({k: v for k, v in tensors.items() if k not in dropped}, path)
    with pytest.raises(WeightShapeMismatchError, match="missing from the weights"):
        load_pipeline(checkpoint_copy)


def _pickle_unet(folder):
    weights = folder / UNET_WEIGHTS
    state = load_file(weights)
    torch.save(state, folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    return state


def test_pickled_weights_refused_without_opt_in(checkpoint_copy):
    _pickle_unet(checkpoint_copy)
    with pytest.raises(PickledWeightsError) as err:
        load_pipeline(checkpoint_copy)
    assert "diffusion_pytorch_model.bin" in str(err.value) and "allow-pickle" in str(err.value)


def test_pickled_weights_load_with_opt_in(checkpoint_copy):
    state = _pickle_unet(checkpoint_copy)
    pipe = load_pipeline(checkpoint_copy, allow_pickle=True)
    loaded = pipe.unet.state_dict()
    assert all(torch.equal(state[k], loaded[k]) for k in state)


def test_cli_prints_the_error_without_traceback(checkpoint_copy, capsys):
    (checkpoint_copy / UNET_WEIGHTS).write_bytes(b"\x00" * 4)
    rc = main(["info", str(checkpoint_copy)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and "truncated" in err
    assert "Traceback" not in err


def test_cli_pickle_flag(checkpoint_copy, capsys):
    _pickle_unet(checkpoint_copy)
    assert main(["info", str(checkpoint_copy), "--json"]) == 1
    assert "pickled" in capsys.readouterr().err
    assert main(["info", str(checkpoint_copy), "--json", "--allow-pickle"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["components"]["unet"]["weight_format"] == "pickle"


def test_fp16_weights_are_reported_as_float16(checkpoint_copy):
    from safetensors.torch import save_file

    path = checkpoint_copy / UNET_WEIGHTS
    save_file({k: v.half() for k, v in load_file(path).items()}, path)
    from edgeldm import describe_model

    assert describe_model(str(checkpoint_copy))["components"]["unet"]["dtype"] == "float16"
    # diffusers computes in the requested dtype (float32 by default, as on a CPU one should)
    assert load_pipeline(checkpoint_copy, dtype=torch.float16).unet.dtype == torch.float16


def test_no_hub_access_is_attempted(tiny_random_dir):
    load_pipeline(tiny_random_dir)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

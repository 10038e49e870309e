"""#26 groundwork: checkpoints in the original single-file layout, written by the tests' own converter and read
back by diffusers' single-file loader with edgeldm's embedded configs, offline."""

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

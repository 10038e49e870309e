"""Derived folders keep each component in the precision its source stored, where that is exact."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors import safe_open  # noqa: E402

from edgeldm.loading import load_pipeline  # noqa: E402
from edgeldm.saving import STORED_DTYPE, remember_stored_dtypes, save_pipeline  # noqa: E402


def _stored_dtypes(folder) -> dict[str, set[str]]:
    out = {}
    for name in ("text_encoder", "unet", "vae"):
        files = sorted((folder / name).glob("*.safetensors"))
        assert files, f"no weights written for {name}"
        out[name] = set()
        for f in files:
            with safe_open(str(f), "pt") as h:
                out[name] |= {h.get_slice(k).get_dtype() for k in h.keys()}
    return out


def test_an_untouched_fp16_text_encoder_is_written_back_fp16_and_exactly(tmp_path):
    pipe = load_pipeline("tiny")  # ships its text encoder in fp16; transformers loads it as fp32
    te = pipe.text_encoder
    assert te.dtype == torch.float32 and getattr(te, STORED_DTYPE) == torch.float16
    before = {k: v.clone() for k, v in te.state_dict().items()}

    save_pipeline(pipe, tmp_path / "out")

    dtypes = _stored_dtypes(tmp_path / "out")
    assert dtypes["text_encoder"] <= {"F16", "I64"} and "F16" in dtypes["text_encoder"]
    assert dtypes["unet"] == {"F32"} and dtypes["vae"] == {"F32"}
    assert te.dtype == torch.float32  # the in-memory pipeline is left as it was
    reloaded = load_pipeline(tmp_path / "out")
    for k, v in reloaded.text_encoder.state_dict().items():
        assert torch.equal(v.float(), before[k].float()), k


def test_a_weight_that_half_precision_cannot_hold_keeps_the_component_fp32(tmp_path):
    pipe = load_pipeline("tiny")
    with torch.no_grad():  # as a trained text encoder would: a value between two fp16 neighbours
        pipe.text_encoder.text_model.final_layer_norm.weight[0] += 1e-6
    save_pipeline(pipe, tmp_path / "out")
    assert _stored_dtypes(tmp_path / "out")["text_encoder"] <= {"F32", "I64"}


def test_a_pruned_subset_of_half_precision_weights_is_written_in_half_precision(tmp_path):
    pipe = load_pipeline("tiny-random")
    with torch.no_grad():  # weights as loaded from an fp16 file: every value exact in fp16
        for p in pipe.unet.parameters():
            p.copy_(p.half().float())
    remember_stored_dtypes(pipe, {"unet": "float16", "vae": None, "text_encoder": "int8"})
    assert not hasattr(pipe.vae, STORED_DTYPE) and not hasattr(pipe.text_encoder, STORED_DTYPE)
    save_pipeline(pipe, tmp_path / "out")
    dtypes = _stored_dtypes(tmp_path / "out")
    assert dtypes["unet"] == {"F16"} and dtypes["vae"] == {"F32"}
    assert pipe.unet.dtype == torch.float32

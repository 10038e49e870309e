"""distill-vae: an AutoencoderTiny trained on a model's VAE replaces it — training that learns and resumes, a
folder that reloads with what the source recorded, and the export -> runtime chain reproducing diffusers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeldm.cli import main
from edgeldm.compressor.vae_distill import distill_vae, tiny_autoencoder, vae_parity
from edgeldm.compressor.vae_distill_config import VaeDistillConfig
from edgeldm.errors import EdgeLDMError
from edgeldm.lineage import read_lineage
from edgeldm.loading import load_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
FAST = dict(batch_size=4, teacher_samples=8, teacher_steps=2)


def test_the_tiny_autoencoder_keeps_the_vae_layout(tiny_random_pipe):
    vae = tiny_random_pipe.vae  # two levels: downsampling factor 2
    tiny = tiny_autoencoder(vae.config, VaeDistillConfig())
    assert tiny.config.num_decoder_blocks == (3, 1) and tiny.config.num_encoder_blocks == (1, 3)
    assert tiny.config.decoder_block_out_channels == (32, 32)  # the VAE's first width (capped at TAESD's 64)
    z = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert tiny.decode(z).sample.shape == vae.decode(z).sample.shape == (2, 3, 16, 16)
        assert tiny.encode(torch.zeros(2, 3, 16, 16)).latents.shape == z.shape
    assert tiny.config.scaling_factor == 1.0  # pipelines feed it the UNet's latents as they are
    with pytest.raises(EdgeLDMError, match="3 levels but the model's VAE has 2") as refused:
        tiny_autoencoder(vae.config, VaeDistillConfig(decoder_blocks=(3, 3, 1)))
    assert refused.value.hint.endswith("e.g. 3,1")  # the default for this VAE, not the rejected list again
    with pytest.raises(EdgeLDMError, match="at least one block"):
        VaeDistillConfig(encoder_blocks=(1, 0)).check()


def test_distill_vae_learns_resumes_and_guards_its_settings(tiny_random_dir, tmp_path):
    pipe = load_pipeline(str(tiny_random_dir))
    work = tmp_path / "v.work"
    config = VaeDistillConfig(steps=40, checkpoint_every=39, lr=2e-3, **FAST)
    tiny, summary = distill_vae(pipe, str(tiny_random_dir), config, work=work)
    assert summary["resumed_from"] == 0 and summary["data"] == 8
    assert json.loads((work / "progress.json").read_text())["step"] == 39
    data = torch.load(work / "data.pt", weights_only=True)
    # the parity report is honest: the trained decoder beats an untrained one on the held-out latents
    some = [data["latents"][:4], data["images"][:4].float(), data["codes"][:4]]
    untrained = vae_parity(tiny_autoencoder(pipe.vae.config, config).eval(), *some)
    trained = vae_parity(tiny, *some)
    assert trained["decoder_psnr_db_mean"] > untrained["decoder_psnr_db_mean"] + 3
    assert summary["parity"]["images"] == 1  # 8 latents: one held out
    _, again = distill_vae(load_pipeline(str(tiny_random_dir)), str(tiny_random_dir), config, work=work)
    assert again["resumed_from"] == 39
    with pytest.raises(EdgeLDMError, match="other settings"):
        distill_vae(pipe, str(tiny_random_dir), VaeDistillConfig(steps=41, **FAST), work=work)


def test_pruned_lcm_with_a_tiny_vae_reloads_exports_and_runs_like_diffusers(tiny_random_dir, tmp_path, capsys,
                                                                           tiny_random_scores):
    from edgeldm.compressor.plan import PLAN_FILE
    from edgeldm.exporters.bundle import ExportConfig, export_bundle
    from edgeldm.runtimes.text2image import Text2Image

    pruned, lcm, out, bundle = tmp_path / "p", tmp_path / "lcm", tmp_path / "taesd", tmp_path / "b"
    assert main(["--quiet", "prune", str(tiny_random_dir), "-o", str(pruned), "--remove", "1", "--samples", "4",
                 "--steps", "2", "--latency-repeat", "0", "--cache", str(tiny_random_scores)]) == 0
    assert main(["--quiet", "distill", str(pruned), "-o", str(lcm), "--steps", "2", "--batch-size", "4",
                 "--teacher-samples", "4", "--validate-every", "0"]) == 0
    before = sorted(p.name for p in lcm.rglob("*"))
    assert main(["--quiet", "distill-vae", str(lcm), "-o", str(out), "--steps", "3", "--batch-size", "4",
                 "--teacher-samples", "8"]) == 0
    assert "vs the original decoder" in capsys.readouterr().out
    assert sorted(p.name for p in lcm.rglob("*")) == before and not (tmp_path / "taesd.work").exists()
    assert json.loads((out / "model_index.json").read_text())["vae"] == ["diffusers", "AutoencoderTiny"]
    # what the source recorded travels along: its pruning and its 4-step sampling
    assert len(json.loads((out / "unet" / PLAN_FILE).read_text())["operations"]) == 1
    lineage = read_lineage(out)
    assert lineage["stage"] == "distill-vae" and lineage["sampling"]["steps"] == 4
    assert lineage["distill_vae"]["parity"]["images"] == 1
    pipe = load_pipeline(str(out))
    assert type(pipe.vae).__name__ == "AutoencoderTiny" and pipe.unet.config.time_cond_proj_dim == 256

    export_bundle(str(out), bundle, ExportConfig(backends=("onnx",)))
    assert json.loads((bundle / "edgeldm.json").read_text())["image"]["scaling_factor"] == 1.0
    t2i = Text2Image(bundle, backend="onnx")
    prompt, seed = "a red circle", 3
    g = torch.Generator().manual_seed(seed)
    ours = t2i.decode(t2i.latents(prompt, steps=4, guidance=8.0,
                                  noise=lambda shape: torch.randn(tuple(shape), generator=g).numpy()))
    ref = pipe(prompt, num_inference_steps=4, guidance_scale=8.0, generator=torch.Generator().manual_seed(seed),
               output_type="np").images[0]
    ref = np.clip(ref * 255.0 + 0.5, 0, 255).astype(np.uint8)
    mse = np.mean((ours.astype(np.float64) - ref) ** 2)
    assert 10 * np.log10(255.0**2 / max(mse, 1e-10)) >= 35.0

    # refused, nothing written: an encoder graph (no posterior to export), a second tiny VAE, a decoder below
    # the floor, an existing output
    with pytest.raises(EdgeLDMError, match="no posterior"):
        export_bundle(str(out), tmp_path / "enc", ExportConfig(backends=("onnx",), vae_encoder=True))
    assert main(["--quiet", "distill-vae", str(out), "-o", str(tmp_path / "again"), "--steps", "1"]) != 0
    assert "AutoencoderTiny" in capsys.readouterr().err
    floor = tmp_path / "floor"
    assert main(["--quiet", "distill-vae", str(lcm), "-o", str(floor), "--steps", "1", "--batch-size", "4",
                 "--teacher-samples", "8", "--min-psnr", "200"]) != 0
    assert "below --min-psnr 200" in capsys.readouterr().err and not floor.exists()
    assert main(["--quiet", "distill-vae", str(lcm), "-o", str(out), "--steps", "1"]) != 0
    assert "already exists" in capsys.readouterr().err

"""Latent consistency distillation: the LCM arithmetic against diffusers' LCMScheduler, students that start as
their teacher, resume, LoRA adapters, and the distill -> export -> runtime chain reproducing diffusers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeldm.cli import main
from edgeldm.compressor.distill import (
    DistillConfig,
    SkippingSchedule,
    add_guidance_embedding,
    boundary_scalings,
    consistency_loss,
    distill,
    guided_step_terms,
    make_student,
    teacher_step_table,
    x0_and_eps,
)
from edgeldm.errors import EdgeLDMError
from edgeldm.lineage import read_lineage
from edgeldm.loading import LORA_FILE, load_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
FAST = dict(batch_size=4, teacher_samples=4, teacher_steps=2, validate_every=0)


def test_scalings_and_schedule_match_lcm_scheduler(tiny_random_pipe):
    from diffusers import LCMScheduler

    sched = LCMScheduler.from_config(tiny_random_pipe.scheduler.config, original_inference_steps=50)
    t = torch.tensor([0, 19, 499, 999])
    ours = boundary_scalings(t, 10.0)
    for i, ti in enumerate(t.tolist()):
        c_skip, c_out = sched.get_scalings_for_boundary_condition_discrete(ti)
        assert ours[0][i].item() == pytest.approx(float(c_skip), rel=1e-6)
        assert ours[1][i].item() == pytest.approx(float(c_out), rel=1e-6)
    solver = SkippingSchedule(sched.alphas_cumprod, 50)
    sched.set_timesteps(50)  # all 50 points of the skipping schedule, high to low
    assert solver.k == 20
    assert solver.timesteps.flip(0).tolist() == sched.timesteps.tolist()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_x0_and_eps_invert_the_forward_process(prediction_type):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    alpha = torch.tensor([0.9, 0.5, 0.05]).view(-1, 1, 1, 1)
    x = alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps
    out = {"epsilon": eps, "sample": x0, "v_prediction": alpha.sqrt() * eps - (1 - alpha).sqrt() * x0}[prediction_type]
    got_x0, got_eps = x0_and_eps(out, x, alpha, prediction_type)
    torch.testing.assert_close(got_x0, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_eps, eps, atol=1e-4, rtol=1e-4)


def test_consistency_losses():
    a = torch.zeros(2, 4)
    for kind in ("l2", "huber", "cauchy"):
        assert consistency_loss(a, a, kind, None).item() == 0.0
        assert consistency_loss(a, a + 0.5, kind, None).item() > 0.0
    # pseudo-Huber grows linearly in the tails, Cauchy logarithmically
    assert consistency_loss(a, a + 10, "huber", None).item() == pytest.approx(10.0, rel=1e-3)
    assert consistency_loss(a, a + 10, "cauchy", None) < consistency_loss(a, a + 10, "huber", None)


def test_fresh_student_is_its_teacher(tiny_random_pipe):
    teacher = tiny_random_pipe.unet
    student = make_student(teacher, DistillConfig(guidance_embedding_dim=16))
    assert student.config.time_cond_proj_dim == 16 and teacher.config.time_cond_proj_dim is None
    x, t, emb = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 8, teacher.config.cross_attention_dim)
    with torch.no_grad():
        ref = teacher(x, t, emb).sample
        for w in (0.0, 7.0):  # a zero projection: the guidance input changes nothing yet
            cond = tiny_random_pipe.get_guidance_scale_embedding(torch.tensor([w, w]), embedding_dim=16)
            torch.testing.assert_close(student(x, t, emb, timestep_cond=cond).sample, ref)
    assert add_guidance_embedding(student, 16) is student  # idempotent


def test_distill_learns_resumes_and_guards_its_settings(tiny_random_dir, tmp_path):
    teacher = load_pipeline(str(tiny_random_dir))
    config = DistillConfig(steps=2, checkpoint_every=1, lr=1e-3, guidance_embedding_dim=16, **FAST)
    work = tmp_path / "d.work"
    student, summary = distill(teacher, str(tiny_random_dir), config, work=work)
    assert summary["resumed_from"] == 0 and summary["history"][-1]["step"] == 2
    assert json.loads((work / "progress.json").read_text())["step"] == 1
    # training moved the guidance projection off zero (the EMA target follows the student)
    assert student.time_embedding.cond_proj.weight.abs().max() > 0
    _, again = distill(load_pipeline(str(tiny_random_dir)), str(tiny_random_dir), config, work=work)
    assert again["resumed_from"] == 1
    with pytest.raises(EdgeLDMError, match="other settings"):
        distill(teacher, str(tiny_random_dir), DistillConfig(steps=3, **FAST), work=work)
    with pytest.raises(EdgeLDMError, match="unknown loss"):
        DistillConfig(loss="l3").check()


def test_guided_step_is_linear_in_w_and_the_table_reproduces_it(tiny_random_pipe):
    """p + w * q is the classifier-free-guided DDIM step for every w; table rows hold exactly that step."""
    from diffusers import DDPMScheduler

    unet = tiny_random_pipe.unet.eval()
    sched = DDPMScheduler.from_config(tiny_random_pipe.scheduler.config)
    solver = SkippingSchedule(sched.alphas_cumprod, 50)
    g = torch.Generator().manual_seed(0)
    dim = unet.config.cross_attention_dim
    latents, cond, uncond = (torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 8, dim, generator=g),
                             torch.randn(1, 8, dim, generator=g))
    table = teacher_step_table(unet, solver, sched, latents, cond, uncond, draws=2, seed=0, batch_size=4)
    assert table["latent"].tolist() == [0, 1, 2, 0, 1, 2] and table["p"].shape == (6, 4, 8, 8)
    assert not torch.equal(table["noise"][0], table["noise"][3])  # a new draw, not a copy
    rows = table["latent"]
    t = solver.timesteps[table["index"]]
    xt = sched.add_noise(latents[rows], table["noise"], t)
    with torch.no_grad():
        both_c, both_u = unet(xt, t, cond[rows]).sample, unet(xt, t, uncond.expand(6, -1, -1)).sample
    alpha = sched.alphas_cumprod[t].view(-1, 1, 1, 1).float()
    for w in (0.0, 1.5, 7.0):
        x0_c, eps_c = x0_and_eps(both_c, xt, alpha, "epsilon")
        x0_u, eps_u = x0_and_eps(both_u, xt, alpha, "epsilon")
        direct = solver.ddim_step(x0_c + w * (x0_c - x0_u), eps_c + w * (eps_c - eps_u), table["index"])
        torch.testing.assert_close(table["p"] + w * table["q"], direct, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        p, q = guided_step_terms(unet, solver, xt[:2], t[:2], table["index"][:2], cond[rows[:2]], uncond)
    torch.testing.assert_close(p, table["p"][:2], atol=1e-5, rtol=1e-5)


def test_distill_on_precomputed_teacher_steps_trains_and_resumes(tiny_random_dir, tmp_path):
    teacher = load_pipeline(str(tiny_random_dir))
    config = DistillConfig(steps=2, checkpoint_every=1, lr=1e-3, guidance_embedding_dim=16, teacher_draws=3, **FAST)
    work = tmp_path / "t.work"
    student, summary = distill(teacher, str(tiny_random_dir), config, work=work)
    table = torch.load(work / "teacher_steps.pt", weights_only=True)
    assert len(table["latent"]) == 3 * FAST["teacher_samples"]
    assert student.time_embedding.cond_proj.weight.abs().max() > 0
    _, again = distill(load_pipeline(str(tiny_random_dir)), str(tiny_random_dir), config, work=work)
    assert again["resumed_from"] == 1
    with pytest.raises(EdgeLDMError, match="teacher-draws"):
        DistillConfig(teacher_draws=-1).check()


def test_validation_prompts_zero_skips_the_validation(tiny_random_dir, tmp_path):
    from edgeldm.stages.distill import DistillOptions

    assert DistillOptions(validation_prompts=0).config().validation_prompts == 0
    with pytest.raises(EdgeLDMError, match="validation-prompts"):
        DistillOptions(validation_prompts=-1).config()
    config = DistillConfig(steps=1, guidance_embedding_dim=16, **{**FAST, "validate_every": 1},
                           validation_prompts=0)
    work = tmp_path / "v.work"
    _, summary = distill(load_pipeline(str(tiny_random_dir)), str(tiny_random_dir), config, work=work)
    assert summary["validation"] == [] and not (work / "validation").exists()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_cli_distill_export_run_reproduces_diffusers_lcm(tiny_random_dir, tmp_path, capsys):
    from edgeldm.exporters.bundle import ExportConfig, export_bundle
    from edgeldm.runtimes.text2image import Text2Image

    out, bundle = tmp_path / "lcm", tmp_path / "bundle"
    assert main(["--quiet", "distill", str(tiny_random_dir), "-o", str(out), "--steps", "3", "--batch-size", "4",
                 "--teacher-samples", "4", "--lr", "1e-3", "--validate-every", "0"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (out / "validation" / "step_000003.png").is_file() and not (tmp_path / "lcm.work").exists()
    lineage = json.loads((out / "edgeldm_source.json").read_text())
    assert lineage["stage"] == "distill" and lineage["sampling"] == {"steps": 4, "guidance": 8.0,
                                                                      "guidance_embedding": True}
    pipe = load_pipeline(str(out))
    assert type(pipe.scheduler).__name__ == "LCMScheduler" and pipe.unet.config.time_cond_proj_dim == 256
    # the output refuses to be overwritten, and a model that already is an LCM is refused as a teacher
    assert main(["--quiet", "distill", str(tiny_random_dir), "-o", str(out)]) != 0
    assert main(["--quiet", "distill", str(out), "-o", str(tmp_path / "again")]) != 0
    assert "already has a guidance embedding" in capsys.readouterr().err

    export_bundle(str(out), bundle, ExportConfig(backends=("onnx",)))
    t2i = Text2Image(bundle, backend="onnx")
    assert t2i.defaults["steps"] == 4 and t2i.guidance_embedding_dim == 256
    prompt, seed = "a red circle", 3

    def torch_noise():
        g = torch.Generator().manual_seed(seed)
        return lambda shape: torch.randn(tuple(shape), generator=g).numpy()

    ours = t2i.decode(t2i.latents(prompt, steps=4, guidance=8.0, noise=torch_noise()))
    ref = pipe(prompt, num_inference_steps=4, guidance_scale=8.0, generator=torch.Generator().manual_seed(seed),
               output_type="np").images[0]
    ref = np.clip(ref * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert _psnr(ours, ref) >= 35.0  # the issue's bar for the runtime's LCM sampler vs diffusers' LCMScheduler

    # static shapes (NPUs, Core ML): an LCM calls its UNet once per step, so its fixed batch is 1, not 2
    static = tmp_path / "static"
    export_bundle(str(out), static, ExportConfig(backends=("onnx",), static=True))
    t2i_static = Text2Image(static, backend="onnx")
    assert t2i_static.unet_batch == 1
    fixed = t2i_static.decode(t2i_static.latents(prompt, steps=4, guidance=8.0, noise=torch_noise()))
    assert _psnr(fixed, ours) >= 35.0


@pytest.mark.filterwarnings("error:While injecting the PEFT adapters:RuntimeWarning")
def test_lcm_lora_writes_an_adapter_that_loads_fused(tiny_random_dir, tmp_path):
    from peft.tuners.lora import LoraLayer

    out = tmp_path / "lora"
    assert main(["--quiet", "distill", str(tiny_random_dir), "-o", str(out), "--mode", "lcm-lora", "--steps", "2",
                 "--batch-size", "4", "--teacher-samples", "4", "--lr", "1e-2", "--lora-rank", "4",
                 "--validate-every", "0"]) == 0
    assert (out / LORA_FILE).is_file()
    lineage = json.loads((out / "edgeldm_source.json").read_text())
    assert lineage["sampling"]["guidance"] == 1.0 and lineage["sampling"]["guidance_embedding"] is False
    teacher, pipe = load_pipeline(str(tiny_random_dir)), load_pipeline(str(out))
    assert pipe.unet.config.time_cond_proj_dim is None
    assert not any(isinstance(m, LoraLayer) for m in pipe.unet.modules())  # fused: plain modules
    changed = [k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, teacher.unet.state_dict()[k])]
    # every kind of adapted layer reached the fused weights (attention projections too)
    for kind in ("attn1.to_q", "attn2.to_k", "ff.net.2", "proj_in", "resnets.0.conv1", "time_emb_proj"):
        assert any(kind in k for k in changed), kind
    assert not any("norm" in k for k in changed)
    # diffusers' own loader takes the adapter file too
    teacher.load_lora_weights(str(out), weight_name=LORA_FILE)
    assert any(isinstance(m, LoraLayer) for m in teacher.unet.modules())


def test_a_corrupt_adapter_is_a_clear_error(tiny_random_dir, tmp_path):
    import shutil

    from edgeldm.errors import CheckpointError

    folder = tmp_path / "m"
    shutil.copytree(tiny_random_dir, folder)
    (folder / LORA_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="LoRA adapter"):
        load_pipeline(str(folder))


def test_a_pruned_teacher_distils_into_a_pruned_lcm_that_reloads_and_exports(tiny_random_dir, tmp_path,
                                                                           tiny_random_scores):
    from edgeldm.compressor.plan import PLAN_FILE
    from edgeldm.exporters.bundle import ExportConfig, export_bundle
    from edgeldm.runtimes.text2image import Text2Image

    pruned, lcm = tmp_path / "p", tmp_path / "lcm"
    assert main(["--quiet", "prune", str(tiny_random_dir), "-o", str(pruned), "--remove", "2", "--samples", "4",
                 "--steps", "2", "--latency-repeat", "0", "--cache", str(tiny_random_scores)]) == 0
    assert main(["--quiet", "distill", str(pruned), "-o", str(lcm), "--steps", "2", "--batch-size", "4",
                 "--teacher-samples", "4", "--validate-every", "0"]) == 0
    plan = json.loads((lcm / "unet" / PLAN_FILE).read_text())
    assert len(plan["operations"]) == 2  # the stages compound: the student keeps the teacher's pruning
    student, teacher = load_pipeline(str(lcm)), load_pipeline(str(pruned))
    assert student.unet.config.time_cond_proj_dim == 256
    assert sum(p.numel() for p in student.unet.parameters()) == \
        sum(p.numel() for p in teacher.unet.parameters()) + student.unet.time_embedding.cond_proj.weight.numel()
    export_bundle(str(lcm), tmp_path / "b", ExportConfig(backends=("onnx",)))
    assert Text2Image(tmp_path / "b", backend="onnx")("a red circle", steps=2).size == (64, 64)

    # the unpruned model can teach the pruned student instead: the pruning stays, the teacher is recorded
    taught = tmp_path / "taught"
    assert main(["--quiet", "distill", str(pruned), "--teacher", str(tiny_random_dir), "-o", str(taught),
                 "--steps", "2", "--batch-size", "4", "--teacher-samples", "4", "--validate-every", "0"]) == 0
    assert len(json.loads((taught / "unet" / PLAN_FILE).read_text())["operations"]) == 2
    assert read_lineage(taught)["distill"]["teacher"] == str(tiny_random_dir.resolve())
    assert read_lineage(lcm)["distill"]["teacher"] is None
    other = load_pipeline(str(taught))
    assert sum(p.numel() for p in other.unet.parameters()) == sum(p.numel() for p in student.unet.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(other.unet.parameters(), student.unet.parameters()))


def test_a_teacher_from_another_latent_space_is_refused(tiny_random_dir, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["--quiet", "distill", str(tiny_random_dir), "--teacher", "tiny", "-o", str(out), "--steps", "1",
                 "--teacher-samples", "2", "--validate-every", "0"]) != 0
    err = capsys.readouterr().err
    assert "does not share" in err and "text encoder" in err and "hidden_size 32 vs 64" in err
    assert not out.exists()


def test_a_teacher_that_names_the_model_itself_is_the_default(tiny_random_dir, tmp_path, monkeypatch):
    from edgeldm.stages.common import same_model as _same_model

    monkeypatch.chdir(tiny_random_dir.parent)
    assert _same_model(tiny_random_dir.name, str(tiny_random_dir))  # one folder by two spellings
    assert _same_model("tiny", "tiny") and not _same_model("tiny", "tiny-random")
    assert not _same_model(str(tiny_random_dir), str(tmp_path))


def test_training_runs_share_one_teacher_generation_through_the_data_cache(tiny_random_dir, tmp_path, monkeypatch):
    from edgeldm import generation
    from edgeldm.compressor.training import teacher_dataset

    calls: list[int] = []
    real = generation.generate
    monkeypatch.setattr(generation, "generate", lambda pipe, prompts, **kw: (calls.append(len(prompts)),
                                                                             real(pipe, prompts, **kw))[1])
    teacher = load_pipeline(str(tiny_random_dir))
    cache = tmp_path / "cache"
    kw = dict(samples=4, steps=2, guidance=7.5, seed=0, cache=cache)
    first = teacher_dataset(teacher, str(tiny_random_dir), **kw)
    again = teacher_dataset(teacher, str(tiny_random_dir), **kw)  # what distill after finetune asks for
    assert calls == [4] and torch.equal(first["latents"], again["latents"])
    teacher_dataset(teacher, str(tiny_random_dir), **{**kw, "steps": 3})  # other settings: generated afresh
    with torch.no_grad():  # the weights are part of the key, not only the settings
        teacher.unet.conv_out.bias += 1
    edited = teacher_dataset(teacher, str(tiny_random_dir), **kw)
    assert calls == [4, 4, 4] and not torch.equal(edited["latents"], first["latents"])
    assert len(list(cache.glob("teacher-latents-*.pt"))) == 3 and not list(cache.glob("*.tmp*"))

"""LD-Pruner: reversible operator patches, scores, budgets, the replayable plan, reload, export, finetune."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from edgeldm.cli import main
from edgeldm.compressor.ldpruner import (Candidate, LatentStatistics, ScoreCache, ScoreConfig, enumerate_candidates,
                                         ld_score, overlaps, paired_score, score_candidates)
from edgeldm.compressor.narrow import channels_to_prune
from edgeldm.compressor.patches import MODIFICATIONS, apply_modification, modifications_for
from edgeldm.compressor.plan import PLAN_FILE
from edgeldm.compressor.prune import PruneConfig, UNetCost, prune_pipeline, save_pruned
from edgeldm.compressor.selection import Budget, select
from edgeldm.errors import CheckpointError, EdgeLDMError
from edgeldm.inventory import count_macs, operator_inventory, unet_example_inputs
from edgeldm.loading import load_pipeline

# the settings of `prune --samples 4 --steps 2 --latency-repeat 0`, so API and CLI tests share tiny_random_scores
FAST = ScoreConfig(samples=4, steps=2, latency_repeat=0)


@pytest.fixture(scope="module")
def pipe(tiny_random_pipe):
    return copy.deepcopy(tiny_random_pipe)


@pytest.fixture(scope="module")
def size(pipe):
    s = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return s, s


def _unet_out(unet, inputs):
    with torch.no_grad():
        return unet(**inputs).sample.clone()


@pytest.fixture(scope="module")
def inputs(pipe, size):
    torch.manual_seed(0)
    x = unet_example_inputs(pipe.unet, *size, vae_scale_factor=pipe.vae_scale_factor)
    return {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in x.items()}


def test_every_modification_changes_the_output_and_undo_restores_it(pipe, inputs):
    reference = _unet_out(pipe.unet, inputs)
    applied = set()
    for op in operator_inventory(pipe.unet):
        module = pipe.unet.get_submodule(op.name)
        for name in modifications_for(module, op.type):
            params = {"idxs": channels_to_prune(module, op.type, 0.5)} if name == "narrow" else None
            undo = apply_modification(pipe.unet, op.name, op.type, name, params)
            changed = _unet_out(pipe.unet, inputs)
            undo()
            assert changed.shape == reference.shape
            assert not torch.allclose(changed, reference), f"{name} {op.name} changed nothing"
            applied.add((name, op.type))
            assert torch.equal(_unet_out(pipe.unet, inputs), reference), f"undo of {name} {op.name}"
    # every registered kind of modification met an operator of tiny-random
    assert applied == set(MODIFICATIONS) | {("narrow", "resnet"), ("narrow", "feed_forward")}


def test_a_modification_that_does_not_fit_is_refused(pipe):
    up_resnet = next(o for o in operator_inventory(pipe.unet) if o.type == "resnet" and o.name.startswith("up_"))
    with pytest.raises(ValueError, match="does not apply"):
        apply_modification(pipe.unet, up_resnet.name, "resnet", "remove")  # channels change: only "replace"


@pytest.fixture(scope="module")
def candidates(pipe, size):
    return enumerate_candidates(pipe.unet, height=size[0], width=size[1], vae_scale_factor=pipe.vae_scale_factor)


def test_candidates_count_their_savings(candidates):
    cands = copy.deepcopy(candidates)
    types = {c.type for c in cands}
    assert {"resnet", "transformer", "transformer_block", "self_attention", "cross_attention", "feed_forward",
            "mid_block"} <= types
    assert all(c.macs_saved > 0 for c in cands)
    by = {c.op: c for c in cands}
    block = next(c for c in cands if c.type == "transformer_block")
    assert by[block.op + ".ff"].macs_saved < block.macs_saved  # a part saves less than its whole


def test_candidate_savings_equal_a_count_of_the_whole_modified_unet(pipe, size, candidates):
    # enumerate counts the UNet once and each stand-in on its operator's recorded call; the whole-UNet
    # count with the modification applied is the definition it must reproduce, narrowing included
    inputs = unet_example_inputs(pipe.unet, *size, vae_scale_factor=pipe.vae_scale_factor)
    base = count_macs(pipe.unet, inputs).total
    assert {c.modification for c in candidates} >= {"remove", "replace", "narrow"}
    for cand in candidates:
        undo = cand.apply(pipe.unet)
        try:
            assert cand.macs_saved == base - count_macs(pipe.unet, inputs).total, cand.key
        finally:
            undo()


def test_ld_score_is_zero_for_the_same_latents_and_grows_with_the_change(pipe):
    stats = LatentStatistics(pipe, ["a red circle", "a blue square", "a green cross", "a cat"], FAST)
    ref = stats.statistics()
    assert ld_score(ref, stats.statistics()) == 0.0  # same prompts and seeds, same latents
    mu, sd = ref
    assert ld_score(ref, (mu + 0.1, sd)) == pytest.approx(0.1 * np.sqrt(mu.size))
    assert ld_score(ref, (mu, sd * 2)) == pytest.approx(np.linalg.norm(sd))


def test_paired_score_sees_what_the_set_statistics_miss():
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((8, 4, 8, 8))
    assert paired_score(lat, lat) == 0.0
    swapped = lat[::-1].copy()  # every prompt gets another prompt's latent: the set is the same
    assert ld_score((lat.mean(0), lat.std(0)), (swapped.mean(0), swapped.std(0))) == pytest.approx(0.0, abs=1e-12)
    assert paired_score(lat, swapped) > 1.0
    assert paired_score(lat, lat + 0.5) == pytest.approx(0.5 * np.sqrt(4 * 8 * 8))


def test_paired_variant_scores_candidates(pipe):
    cands = [Candidate("mid_block", "mid_block", "remove")]
    config = dataclasses.replace(FAST, variant="paired")
    scored = score_candidates(pipe, copy.deepcopy(cands), ["a red circle", "a blue square"], config)
    assert scored[0].score > 0
    with pytest.raises(ValueError, match="unknown score variant"):
        score_candidates(pipe, copy.deepcopy(cands), ["a red circle"], dataclasses.replace(FAST, variant="mean"))


def test_scores_are_cached_and_resume(pipe, tmp_path, monkeypatch):
    cands = [Candidate("mid_block", "mid_block", "remove"),
             Candidate("down_blocks.0.resnets.1", "resnet", "remove")]
    cache = ScoreCache(tmp_path, {"k": 1})
    scored = score_candidates(pipe, copy.deepcopy(cands), ["a red circle"] * 4, FAST, cache=cache)
    assert all(c.score is not None and c.score > 0 for c in scored)
    calls = []
    monkeypatch.setattr(LatentStatistics, "statistics", lambda self: calls.append(1) or (np.zeros(1), np.zeros(1)))
    again = score_candidates(pipe, copy.deepcopy(cands), ["a red circle"] * 4, FAST, cache=cache)
    assert [c.score for c in again] == [c.score for c in scored]
    assert len(calls) == 1  # only the reference statistics: every candidate came from the cache


def test_the_score_cache_is_keyed_by_the_weights_not_only_the_path(pipe, tmp_path, monkeypatch):
    import edgeldm.compressor.prune as prune_mod

    keys = []
    monkeypatch.setattr(prune_mod, "score_candidates", lambda p, cands, prompts, cfg, cache: keys.append(cache.context))
    model = copy.deepcopy(pipe)
    model.unet.register_buffer("scalar", torch.tensor(1.0))  # 0-dim tensors hash too
    config = PruneConfig(score=FAST)
    prune_mod.score_model(model, "same/path", config, cache_dir=tmp_path)
    prune_mod.score_model(model, "same/path", config, cache_dir=tmp_path)
    with torch.no_grad():  # weights changed in place, as an edited checkpoint folder would be
        next(model.unet.parameters()).add_(1e-3)
    prune_mod.score_model(model, "same/path", config, cache_dir=tmp_path)
    assert keys[0] == keys[1] != keys[2]


def test_selection_meets_the_budget_without_overlaps(pipe, size, candidates):
    cands = copy.deepcopy(candidates)
    for i, c in enumerate(cands):
        c.score = float(i % 7)
    cost = UNetCost(pipe, *size)
    picked = select(cands, pipe.unet, Budget(target_macs=0.7), measure=lambda sel: cost.kept(sel, "macs"))
    assert cost.kept(picked, "macs") <= 0.7
    assert cost.kept(picked[:-1], "macs") > 0.7  # greedy: it stopped at the first pick that met it
    assert not any(overlaps(a.op, b.op) for i, a in enumerate(picked) for b in picked[i + 1:])
    assert len(select(cands, pipe.unet, Budget(remove=3))) == 3
    random_picks = select(cands, pipe.unet, Budget(remove=3), strategy="random", seed=1)
    assert random_picks == select(cands, pipe.unet, Budget(remove=3), strategy="random", seed=1)
    bk = select(cands, pipe.unet, Budget(), strategy="bk-sdm")
    assert {c.op for c in bk} >= {"mid_block", "down_blocks.1.attentions.1"}
    with pytest.raises(ValueError):
        Budget(target_macs=1.5)


def test_summed_savings_equal_a_count_of_the_pruned_unet(pipe, size, candidates):
    cost = UNetCost(pipe, *size)
    for seed in range(3):  # random non-overlapping selections from every kind of candidate
        picked = select(copy.deepcopy(candidates), pipe.unet, Budget(remove=6), strategy="random", seed=seed)
        assert len(picked) == 6
        for by in ("macs", "params"):
            assert cost.summed(picked, by) == pytest.approx(cost.kept(picked, by), abs=1e-12), (seed, by)


def test_ranking_by_measured_latency(pipe, size, candidates):
    cands = copy.deepcopy(candidates)
    for i, c in enumerate(cands):
        c.score = 1.0
        c.latency_saved_s = None
    with pytest.raises(ValueError, match="no measured latency"):
        select(cands, pipe.unet, Budget(remove=2), rank_by="latency")
    # equal scores: by MACs the biggest MAC saver goes first; by latency the biggest time saver, and an
    # operator measured to save no time never goes, however many MACs it saves
    by_macs = max(cands, key=lambda c: c.macs_saved)
    fastest = min(cands, key=lambda c: c.macs_saved if c.macs_saved > 0 else np.inf)
    for c in cands:
        c.latency_saved_s = 1e-3
    fastest.latency_saved_s, by_macs.latency_saved_s = 5e-3, -1e-4
    assert select(cands, pipe.unet, Budget(remove=1))[0] is by_macs
    assert select(cands, pipe.unet, Budget(remove=1), rank_by="latency")[0] is fastest
    every = select(cands, pipe.unet, Budget(remove=len(cands)), rank_by="latency")
    assert by_macs not in every and fastest in every


def test_protected_operators_and_their_containers_are_never_picked(pipe, size, candidates):
    cands = copy.deepcopy(candidates)
    for c in cands:  # make the protected ones the most attractive picks
        c.score = 0.0 if "attn2" in c.op or "transformer_blocks" in c.op else 1.0
    cost = UNetCost(pipe, *size)
    picked = select(cands, pipe.unet, Budget(target_macs=0.8), measure=lambda sel: cost.kept(sel, "macs"),
                    protect=("*.attn2",))
    assert picked and not any("attn2" in c.op for c in picked)
    # a transformer block (or whole spatial transformer) contains an attn2: removing it would remove that too
    assert not any(c.op.endswith("transformer_blocks.0") or c.op.endswith(("attentions.0", "attentions.1"))
                   for c in picked)
    unprotected = select(cands, pipe.unet, Budget(target_macs=0.8), measure=lambda sel: cost.kept(sel, "macs"))
    assert any("transformer_blocks" in c.op or "attn2" in c.op for c in unprotected)  # the test could fail
    # nothing inside a protected module either
    inside = select(cands, pipe.unet, Budget(remove=5), protect=("mid_block",))
    assert inside and not any(c.op == "mid_block" or c.op.startswith("mid_block.") for c in inside)
    assert any(c.op.startswith("mid_block") for c in select(cands, pipe.unet, Budget(remove=len(cands))))


def test_a_protect_pattern_matching_nothing_is_an_error(tiny_random_dir, tmp_path, capsys):
    rc = main(["prune", str(tiny_random_dir), "-o", str(tmp_path / "p"), "--protect", "*.atn2"])
    assert rc == 1 and "matches no module" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


@pytest.fixture(scope="module")
def pruned_dir(tiny_random_dir, tmp_path_factory, tiny_random_scores):
    pipe = load_pipeline(str(tiny_random_dir))
    config = PruneConfig(budget=Budget(target_macs=0.6), score=FAST)
    plan, scored = prune_pipeline(pipe, str(tiny_random_dir), config, cache_dir=tiny_random_scores)
    out = tmp_path_factory.mktemp("pruned") / "p"
    save_pruned(pipe, plan, out)
    return out, pipe, plan, scored


def test_pruned_model_reloads_from_plan_and_safetensors(pruned_dir, inputs):
    out, pipe, plan, scored = pruned_dir
    assert plan.report["macs"]["kept"] <= 0.6 and plan.operations
    assert all(c.score is not None for c in scored)
    assert (out / "unet" / PLAN_FILE).is_file() and not list(out.rglob("*.bin"))
    reloaded = load_pipeline(str(out))
    assert torch.allclose(_unet_out(reloaded.unet, inputs), _unet_out(pipe.unet, inputs), atol=1e-6)
    n = sum(p.numel() for p in reloaded.unet.parameters())
    assert n == plan.report["params"]["pruned"] < plan.report["params"]["original"]
    assert json.loads((out / "edgeldm_source.json").read_text())["stage"] == "prune"


def test_a_pruned_unet_from_half_precision_weights_is_written_fp16_and_reloads_fp32(pruned_dir, inputs, tmp_path):
    from safetensors import safe_open

    from edgeldm.saving import remember_stored_dtypes

    out, _, plan, _ = pruned_dir
    pipe = load_pipeline(str(out))
    with torch.no_grad():  # as pruned from an fp16 checkpoint: the surviving weights are fp16 values
        for p in pipe.unet.parameters():
            p.copy_(p.half().float())
    remember_stored_dtypes(pipe, {"unet": "float16"})
    save_pruned(pipe, plan, tmp_path / "p16")
    with safe_open(str(next((tmp_path / "p16" / "unet").glob("*.safetensors"))), "pt") as h:
        assert {h.get_slice(k).get_dtype() for k in h.keys()} == {"F16"}
    reloaded = load_pipeline(str(tmp_path / "p16"))  # the rest of the pipeline is fp32: so must the UNet be
    assert reloaded.unet.dtype == torch.float32
    assert torch.equal(_unet_out(reloaded.unet, inputs), _unet_out(pipe.unet, inputs))


def test_a_plan_that_does_not_match_the_weights_is_refused(pruned_dir, tmp_path):
    import shutil

    out, *_ = pruned_dir
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    plan = json.loads((bad / "unet" / PLAN_FILE).read_text())
    plan["operations"] = plan["operations"][1:]  # one operation forgotten: its weights are missing
    (bad / "unet" / PLAN_FILE).write_text(json.dumps(plan))
    with pytest.raises(CheckpointError, match="missing|not in the pruned"):
        load_pipeline(str(bad))
    (bad / "unet" / PLAN_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pipeline(str(bad))


def test_pruned_model_exports_and_runs_without_torch_like_in_torch(pruned_dir, tmp_path):
    from edgeldm.benchmarks.quality import psnr
    from edgeldm.exporters.bundle import ExportConfig, export_bundle
    from edgeldm.runtimes.text2image import Text2Image

    out, pipe, *_ = pruned_dir
    bundle = tmp_path / "bundle"
    export_bundle(str(out), bundle, ExportConfig(backends=("onnx",)))
    t2i = Text2Image(bundle, backend="onnx")
    noise = np.random.default_rng(3).standard_normal((1, 4, 32, 32)).astype(np.float32)
    ours = t2i.decode(t2i.latents("a red circle", steps=3, guidance=7.5, initial_latents=noise))
    ref = pipe("a red circle", num_inference_steps=3, guidance_scale=7.5, latents=torch.from_numpy(noise),
               output_type="np").images[0]
    ref = np.clip(ref * 255 + 0.5, 0, 255).astype(np.uint8)
    assert psnr(ours[None], ref[None])[0] >= 35.0


def test_cli_prune_score_only_and_finetune_resume(tiny_random_dir, tmp_path, capsys, tiny_random_scores):
    out = tmp_path / "p"
    common = ["--samples", "4", "--steps", "2", "--latency-repeat", "0"]
    cached = [*common, "--cache", str(tiny_random_scores)]
    assert main(["--quiet", "prune", str(tiny_random_dir), "--score-only", "--json", *cached]) == 0
    report = json.loads(capsys.readouterr().out)
    scores = [c["score"] for c in report["candidates"]]
    assert scores == sorted(scores) and len(scores) > 10
    assert main(["--quiet", "prune", str(tiny_random_dir), "-o", str(out), "--remove", "2", *cached]) == 0
    assert len(json.loads((out / "unet" / PLAN_FILE).read_text())["operations"]) == 2
    assert main(["--quiet", "prune", str(tiny_random_dir), "-o", str(out), "--remove", "2", *common]) != 0  # exists
    assert "already exists" in capsys.readouterr().err

    from edgeldm.compressor.finetune import FinetuneConfig, finetune

    student, teacher = load_pipeline(str(out)), load_pipeline(str(tiny_random_dir))
    config = FinetuneConfig(steps=2, batch_size=2, teacher_samples=4, teacher_steps=2, scene_samples=0,
                            checkpoint_every=1)
    work = tmp_path / "manual.work"
    first = finetune(student, teacher, str(out), config, work=work)
    assert first["resumed_from"] == 0 and json.loads((work / "progress.json").read_text())["step"] == 1
    again = finetune(load_pipeline(str(out)), teacher, str(out), config, work=work)
    assert again["resumed_from"] == 1  # picked up the checkpoint of step 1

    ft = tmp_path / "ft"
    assert main(["--quiet", "finetune", str(out), "--teacher", str(tiny_random_dir), "-o", str(ft), "--steps", "2",
                 "--batch-size", "2", "--teacher-samples", "4", "--scene-samples", "0"]) == 0
    before, after = load_pipeline(str(out)).unet.state_dict(), load_pipeline(str(ft)).unet.state_dict()
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((ft / "unet" / PLAN_FILE).read_text())["report"]["finetune"]["config"]["steps"] == 2

    # pruned again after the finetune (gradual pruning): the plan must still replay from config.json, and
    # --target-macs counts against the unpruned architecture, not against the pruned input
    first = json.loads((ft / "unet" / PLAN_FILE).read_text())
    share = first["report"]["macs"]["kept"]
    assert main(["--quiet", "prune", str(ft), "-o", str(tmp_path / "no"), "--target-macs", f"{share + 0.01:.3f}",
                 *common]) != 0
    assert "asks for no more pruning" in capsys.readouterr().err and not (tmp_path / "no").exists()
    again = tmp_path / "p2"
    assert main(["--quiet", "prune", str(ft), "-o", str(again), "--target-macs", f"{share - 0.05:.3f}", *common]) == 0
    assert "after the input's 2" in capsys.readouterr().out
    plan = json.loads((again / "unet" / PLAN_FILE).read_text())
    assert len(plan["operations"]) > 2 and plan["operations"][:2] == first["operations"]
    assert plan["report"]["previous"]["finetune"]["config"]["steps"] == 2
    macs = plan["report"]["macs"]
    assert macs["kept_of_architecture"] <= share - 0.05 + 1e-9 < macs["kept"] < 1
    assert macs["architecture"] == first["report"]["macs"]["original"] > macs["original"]
    reloaded = load_pipeline(str(again))
    n = sum(p.numel() for p in reloaded.unet.parameters())
    assert n == plan["report"]["params"]["pruned"]

    from edgeldm.info import describe_model

    info = describe_model(str(again))  # the pruned UNet, not the unpruned architecture of its config.json
    assert info["components"]["unet"]["parameters"] == n
    assert info["unet"]["macs_per_step"] < describe_model(str(tiny_random_dir))["unet"]["macs_per_step"]


def test_guided_kd_is_zero_for_the_teacher_itself_and_trains_a_pruned_student(tiny_random_dir, pruned_dir, tmp_path):
    from edgeldm.compressor.finetune import FinetuneConfig, finetune

    teacher = load_pipeline(str(tiny_random_dir))
    config = FinetuneConfig(steps=1, batch_size=2, teacher_samples=4, teacher_steps=2, scene_samples=0,
                            guided_kd_weight=1.0)
    # the logged losses are those of the first step's forward pass, before the update
    same = finetune(load_pipeline(str(tiny_random_dir)), teacher, str(tiny_random_dir), config, work=tmp_path / "a")
    assert same["history"][-1]["guided_kd"] == same["history"][-1]["out_kd"] == 0.0
    out, *_ = pruned_dir
    student = load_pipeline(str(out))
    before = {k: v.clone() for k, v in student.unet.state_dict().items()}
    pruned = finetune(student, teacher, str(out), config, work=tmp_path / "b")
    assert pruned["history"][-1]["guided_kd"] > 0
    assert any(not torch.equal(before[k], v) for k, v in student.unet.state_dict().items())


def test_prune_refuses_contradictory_budgets(tiny_random_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse: the budgets are mutually exclusive
        main(["prune", str(tiny_random_dir), "-o", str(tmp_path / "x"), "--remove", "2", "--target-macs", "0.5"])
    assert main(["--quiet", "prune", str(tiny_random_dir), "-o", str(tmp_path / "y"), "--target-macs", "1.5"]) != 0
    assert "(0, 1)" in capsys.readouterr().err
    assert main(["--quiet", "prune", str(tiny_random_dir)]) != 0  # no -o and no --score-only
    assert "--output is required" in capsys.readouterr().err


def test_removing_more_operators_than_can_go_together_is_refused_before_scoring(pipe, monkeypatch):
    import edgeldm.compressor.prune as prune_module

    def never(*args, **kwargs):
        raise AssertionError("scored before refusing")

    monkeypatch.setattr(prune_module, "score_model", never)
    names = [op.name for op in operator_inventory(pipe.unet)]
    innermost = [a for a in names if not any(b.startswith(a + ".") for b in names)]
    with pytest.raises(EdgeLDMError, match=f"has {len(innermost)} that do not contain one another"):
        prune_pipeline(pipe, "tiny-random", PruneConfig(budget=Budget(remove=len(innermost) + 1), score=FAST))
    # protecting a module leaves out what it contains and what contains it
    with pytest.raises(EdgeLDMError, match="protected ones left out"):
        prune_pipeline(pipe, "tiny-random", PruneConfig(budget=Budget(remove=len(innermost)), score=FAST,
                                                        protect=("down_blocks.*",)))


def test_narrowed_channels_replay_from_the_plan(tiny_random_dir, candidates, inputs, tmp_path):
    from edgeldm.compressor.plan import Operation, PruningPlan

    pipe = load_pipeline(str(tiny_random_dir))
    narrows = [c for c in candidates if c.modification == "narrow"]
    assert {c.type for c in narrows} == {"resnet", "feed_forward"}
    chosen = [next(c for c in narrows if c.type == t) for t in ("resnet", "feed_forward")]
    before = sum(p.numel() for p in pipe.unet.parameters())
    for c in chosen:
        c.apply(pipe.unet)
    assert sum(p.numel() for p in pipe.unet.parameters()) == before - sum(c.params_saved for c in chosen)
    plan = PruningPlan(base=str(tiny_random_dir), operations=[Operation(c.op, c.type, c.modification, c.params)
                                                                for c in chosen])
    save_pruned(pipe, plan, tmp_path / "narrow")
    reloaded = load_pipeline(str(tmp_path / "narrow"))
    assert torch.allclose(_unet_out(reloaded.unet, inputs), _unet_out(pipe.unet, inputs), atol=1e-6)
    norm = reloaded.unet.get_submodule(chosen[0].op).norm2
    assert norm.num_channels % norm.num_groups == 0 and norm.num_channels < 64


def test_iterative_pruning_rescores_between_batches(tiny_random_dir, monkeypatch, tiny_random_scores):
    import edgeldm.compressor.prune as prune_mod

    pipe = load_pipeline(str(tiny_random_dir))
    rounds = []
    original = prune_mod.score_model

    def counting(*args, already=(), **kwargs):
        rounds.append(len(already))
        return original(*args, already=already, **kwargs)

    monkeypatch.setattr(prune_mod, "score_model", counting)
    # the down blocks protected: half the candidates to re-score, and the first round comes from the cache
    config = PruneConfig(budget=Budget(remove=3), score=FAST, iterative=True, rescore_every=2,
                         protect=("down_blocks.*",))
    plan, _ = prune_pipeline(pipe, str(tiny_random_dir), config, cache_dir=tiny_random_scores)
    assert len(plan.operations) == 3 and not any(op.op.startswith("down_blocks") for op in plan.operations)
    assert rounds == [0, 2]  # scored on the original, then again with the first two removals applied


def test_ranking_by_latency_without_measuring_it_is_refused(tiny_random_dir, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["prune", str(tiny_random_dir), "-o", str(out), "--rank-by", "latency", "--latency-repeat", "0",
                 "--samples", "2", "--steps", "2"]) != 0
    assert "needs the per-candidate latency" in capsys.readouterr().err and not out.exists()


def test_a_score_size_the_model_cannot_take_is_refused_before_scoring(tiny_random_dir, tmp_path, capsys):
    out = tmp_path / "p"
    # tiny-random's sides are multiples of 4 (VAE factor 2 x one UNet downsampling)
    assert main(["prune", str(tiny_random_dir), "-o", str(out), "--score-size", "63", "--samples", "2"]) != 0
    err = capsys.readouterr().err
    assert "--score-size 63 is not a multiple of" in err and not out.exists()


def test_prune_device_is_checked_before_any_work(tiny_random_dir, tmp_path, capsys, monkeypatch):
    import torch

    out = tmp_path / "p"
    assert main(["prune", str(tiny_random_dir), "-o", str(out), "--device", "gpu0"]) != 0
    assert "is not a torch device" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["prune", str(tiny_random_dir), "-o", str(out), "--device", "cuda"]) != 0
    assert "no CUDA device" in capsys.readouterr().err and not out.exists()


def test_score_cost_benchmark_extrapolates_from_the_timed_candidates(tiny_random_dir):
    from edgeldm.benchmarks.studies.prune_bench import score_cost

    res = score_cost(str(tiny_random_dir), device="cpu", candidates=2, samples=2, steps=1, latency_repeat=0)
    assert res["timed"] == 2 and len(res["timed_ops"]) == 2 and res["candidates"] > 2
    assert res["timed_ops"][0] != res["timed_ops"][1]  # spread over the inventory, first and last
    assert res["estimated_total_seconds"] == pytest.approx(
        res["enumerate_seconds"] + res["reference_seconds"] + res["seconds_per_candidate"] * res["candidates"])
    assert res["seconds_per_candidate"] > 0 and "measured_total_seconds" not in res

"""``edgeldm compress``: run a recipe's stages into one output folder, resumably, with quality gates.

Layout of OUT::

    recipe.yaml                  the recipe as written (+ run.json: resolved options, overrides, the model)
    00-baseline/                 the original model measured like the evaluate stages measure (when needed)
    01-prune/   model/  stage.json  log.txt        one folder per stage: artifact, record, log
    02-finetune/ ...
    05-evaluate/ stage.json  samples.npz  log.txt  measurement stages keep their metrics and sample images
    cache/scores/                the run's LD-Pruner scores, shared by its prune stages and kept across --resume
    cache/teacher/               teacher generations shared by its finetune and distill stages (one per key)
    bundle/                      the final bundle, its manifest stamped with the recipe
    report/                      report.md, report.html, latency_quality.png, contact_sheet.png, summary.json

``stage.json`` is written when a stage starts (status ``running``) and again when it ends (``done``, with
metrics, gates and the artifact's content digest). ``--resume`` skips a stage whose record is ``done`` with
the same key — a digest of its kind, its options and its input's content — and whose artifact still has the
recorded digest. Stages write their artifacts atomically, so an interrupted stage leaves no half-written
model; training stages resume from their own ``.work`` checkpoints inside the stage folder.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_output_dir, atomic_write_text
from .errors import EdgeLDMError
from .recipe import STAGE_KINDS, Recipe, Stage, options_digest, stage_parsers

logger = logging.getLogger("edgeldm")
RECORD = "stage.json"
SAMPLES = "samples.npz"
SAMPLE_IMAGES = 8
SCORE_CACHE = "cache/scores"
TEACHER_CACHE = "cache/teacher"
COMPRESS_SCHEMA = "edgeldm.compress/1"


class GateFailed(EdgeLDMError):
    """A stage's quality gate did not hold; everything produced so far is kept."""


#: a recipe's ``teacher: original`` names the model the run started from, whatever its path
ORIGINAL = "original"


# --- content digests -----------------------------------------------------------------------------


def tree_digest(path: Path) -> str:
    """SHA-256 over every file's relative path and content digest (a folder), or over the file itself."""
    from .manifest import sha256_file

    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def source_digest(model: str) -> str:
    """A zoo name hashes its embedded folder (configs, or shipped weights); a folder its content."""
    from .zoo import ZOO

    if model in ZOO and not Path(model).exists():
        return "zoo:" + tree_digest(ZOO[model].folder)
    path = Path(model)
    if not path.exists():
        raise EdgeLDMError(f"{model} does not exist", hint="pass a diffusers folder or a zoo name (edgeldm zoo list)")
    return tree_digest(path)


#: the folders that hold weights, in a model and in a bundle (tokenizer, scheduler and configs are not counted)
WEIGHT_FOLDERS = ("text_encoder", "unet", "vae", "vae_decoder", "vae_encoder")


def weights_bytes(path: str | Path) -> int:
    """Bytes of the weights (or graphs) a model folder or bundle ships: its component folders only.

    The tokenizer and configs are the same text either way, so they are left out of size ratios. A bundle's
    components hold every backend it was exported for: compare single-backend bundles.
    """
    from .benchmarks.targets import folder_bytes

    return sum(folder_bytes(Path(path) / c) for c in WEIGHT_FOLDERS if (Path(path) / c).is_dir())


def model_bytes(model: str, info: dict) -> int:
    """Weight bytes of a model on disk; a random-weight preset counts what its fp32 weights would take
    (``info``: the model's ``describe_model``)."""
    from .zoo import ZOO

    if Path(model).exists():
        return weights_bytes(model)
    entry = ZOO[model]
    if entry.kind == "checkpoint":
        return weights_bytes(entry.folder)
    return sum(c["weights_bytes"] for c in info["components"].values() if "weights_bytes" in c)


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Artifact:
    """What a stage consumes: the original model, a stage's model, or a bundle."""

    path: str
    kind: str  # "model" or "bundle"
    digest: str
    label: str  # "original" or the stage folder name
    macs: int | None = None


@dataclass
class RunState:
    model: str
    out: Path
    recipe: Recipe
    allow_pickle: bool
    original: Artifact | None = None
    current: dict = field(default_factory=dict)  # "model" / "bundle" -> Artifact
    latest: Artifact | None = None
    rows: list = field(default_factory=list)  # one per artifact, for the report
    records: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def compress(model: str, recipe: Recipe, out: str | Path, *, resume: bool = False, overwrite: bool = False,
             allow_pickle: bool = False) -> dict:
    """Run ``recipe`` on ``model`` into ``out``; returns the summary (also ``out/report/summary.json``)."""
    digest = source_digest(model)  # first: a missing input leaves no run folder behind
    out = Path(out).absolute()
    if Path(model).exists():
        src = Path(model).absolute()
        if out == src or src in out.parents or out in src.parents:
            raise EdgeLDMError(f"output {out} overlaps the input {src}; edgeldm never writes into its input")
    if out.exists() and any(out.iterdir()) and not (out / "run.json").is_file():
        # --overwrite deletes the folder: only ever one that a compress run made
        raise EdgeLDMError(f"{out} exists and is not an `edgeldm compress` run folder (no run.json)",
                           hint="choose a new output folder")
    if out.exists() and not resume:
        if not overwrite:
            raise EdgeLDMError(f"{out} already exists",
                               hint="pass --resume to continue that run, or --overwrite to start again")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # the final bundle is rebuilt from the stages at the end: one left by an earlier run must not outlive a
    # run that now stops early (a failed gate, another recipe)
    shutil.rmtree(out / "bundle", ignore_errors=True)
    _write_run_files(out, model, recipe, resume)
    state = RunState(model=model, out=out, recipe=recipe, allow_pickle=allow_pickle)
    logger.info("compress %s with recipe %s (%d stages) into %s", model, recipe.name, len(recipe.stages), out)
    from .info import describe_model

    info = describe_model(model, allow_pickle=allow_pickle)  # UNet MACs: the counter of `edgeldm info`
    state.original = Artifact(model, "model", digest, "original", int(info["unet"]["macs_per_step"]))
    state.current["model"] = state.latest = state.original
    state.rows.append({"label": "original", "stage": "original", "path": model, "kind": "model",
                       "size_bytes": model_bytes(model, info), "macs": state.original.macs})
    parsers = stage_parsers()
    for index, stage in enumerate(recipe.stages, 1):
        _run_one(state, index, stage, parsers)
    final = state.current.get("bundle")
    summary = _finish(state, final, state.elapsed())
    if final is not None:
        logger.info("final bundle: %s (weights %s)", out / "bundle", _mib(weights_bytes(out / "bundle")))
    return summary


def _write_run_files(out: Path, model: str, recipe: Recipe, resume: bool) -> None:
    atomic_write_text(out / "recipe.yaml", recipe.text)
    run = {"schema": COMPRESS_SCHEMA, "model": model, "recipe": recipe.resolved(), "resumed": resume,
           "started": _now()}
    atomic_write_text(out / "run.json", json.dumps(run, indent=2) + "\n")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def stage_banner(index: int, total: int, kind: str, note: str, elapsed: float) -> None:
    """Overall progress between the stages (each stage shows its own bars and losses)."""
    logger.info("[%d/%d] %s: %s  (run time so far %dm%02ds)", index, total, kind, note, elapsed // 60, elapsed % 60)


def _run_one(state: RunState, index: int, stage: Stage, parsers) -> None:
    sdir = state.out / f"{index:02d}-{stage.kind}"
    inp = _input_for(state, stage)
    extra = {"teacher": state.original.digest} \
        if stage.kind in ("finetune", "evaluate", "bench") or stage.options.get("teacher") == ORIGINAL else {}
    key = hashlib.sha256(json.dumps([options_digest(stage), inp.digest, extra], sort_keys=True).encode()).hexdigest()
    record = _read_record(sdir)
    total = len(state.recipe.stages)
    if record and record.get("status") == "done" and record.get("key") == key and _artifact_intact(sdir, record):
        stage_banner(index, total, stage.kind, "cached (inputs and options unchanged)", state.elapsed())
        # gates are not part of the key: a changed gate re-judges the recorded measurement
        record["gates"] = _judge(stage, record["metrics"], record["baseline"])
        record["seconds"] = None
    else:
        if record and record.get("key") != key and sdir.exists():
            shutil.rmtree(sdir)  # different inputs or options: its partial state (.work) is not ours to resume
        stage_banner(index, total, stage.kind, f"on {inp.label}", state.elapsed())
        record = _execute(state, index, stage, sdir, inp, key, parsers)
    state.records.append(record)
    _advance(state, stage, sdir, record, inp)
    failed = [g for g in record["gates"] if not g["ok"]]
    for g in record["gates"]:
        logger.info("  gate: %s", g["message"])
    if failed:
        _finish(state, state.current.get("bundle"), None, failed_at=sdir.name)
        raise GateFailed(f"stage {sdir.name}: quality gate failed: " + "; ".join(g["message"] for g in failed),
                         hint=f"everything so far is kept in {state.out}; change the recipe and rerun with "
                              "--resume (finished stages are reused)")


def _input_for(state: RunState, stage: Stage) -> Artifact:
    consumes = stage.spec.consumes
    return state.latest if consumes == "any" else state.current[consumes]


def _read_record(sdir: Path) -> dict | None:
    try:
        return json.loads((sdir / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _artifact_intact(sdir: Path, record: dict) -> bool:
    if not record.get("artifact"):
        return True
    path = sdir / record["artifact"]
    return path.exists() and tree_digest(path) == record.get("artifact_digest")


def _execute(state: RunState, index: int, stage: Stage, sdir: Path, inp: Artifact, key: str, parsers) -> dict:
    spec = stage.spec
    sdir.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage.kind, "index": index, "status": "running", "key": key, "input": inp.path,
              "input_label": inp.label, "input_digest": inp.digest, "options": stage.options, "started": _now(),
              "artifact": spec.produces, "gates": []}
    _write_record(sdir, record)
    t0 = time.perf_counter()
    try:
        with _stage_log(sdir / "log.txt") as captured:
            metrics, baseline, argv = _STAGE_RUNNERS[stage.kind](state, stage, sdir, inp, parsers[stage.kind])
    except KeyboardInterrupt:
        _write_record(sdir, {**record, "status": "interrupted", "finished": _now()})
        raise
    except BaseException as exc:
        _write_record(sdir, {**record, "status": "failed", "error": str(exc), "finished": _now()})
        raise
    record["argv"] = argv
    record["stdout_tail"] = captured.getvalue()[-2000:]
    if spec.produces:
        record["artifact_digest"] = tree_digest(sdir / spec.produces)
    record.update(metrics=metrics, baseline=baseline, seconds=round(time.perf_counter() - t0, 2))
    record["gates"] = _judge(stage, metrics, baseline)
    record.update(status="done", finished=_now())
    _write_record(sdir, record)
    return record


def _write_record(sdir: Path, record: dict) -> None:
    atomic_write_text(sdir / RECORD, json.dumps(record, indent=2) + "\n")


def _judge(stage: Stage, metrics: dict, baseline: dict) -> list[dict]:
    return [dict(zip(("ok", "message"), g.check(metrics, baseline)), gate=g.text) for g in stage.gates]


def _advance(state: RunState, stage: Stage, sdir: Path, record: dict, inp: Artifact) -> None:
    """Make the stage's artifact the current one, and attach measurements to the artifact they measured."""
    spec = stage.spec
    if spec.produces:
        path = str(sdir / spec.produces)
        # the pruning plan's own count of what it kept, applied to the original's count: one counter for
        # every row (info's counter builds the base architecture and cannot see a plan); other stages keep
        # the architecture (distill adds a guidance embedding of negligible cost)
        kept = record["metrics"].get("macs_kept", 1.0) if stage.kind == "prune" else 1.0
        macs = None if inp.macs is None else int(round(inp.macs * kept))
        art = Artifact(path, spec.produces, record["artifact_digest"], sdir.name, macs)
        state.current[spec.produces] = state.latest = art
        state.rows.append({"label": sdir.name, "stage": stage.kind, "path": path, "kind": spec.produces,
                           "size_bytes": record["metrics"]["size_bytes"], "macs": macs})
        return
    row = next(r for r in reversed(state.rows) if r["label"] == inp.label)
    row[stage.kind] = record["metrics"]
    state.rows[0].setdefault(stage.kind, record["baseline"])


# --- stage runners -------------------------------------------------------------------------------


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on a bad command line; the recipe was validated, so say so
        raise EdgeLDMError(f"could not build `edgeldm {parser.prog.split()[-1]} {' '.join(argv)}` (exit {exc.code})") \
            from None


def _artifact_stage(state: RunState, stage: Stage, sdir: Path, inp: Artifact, parser) -> tuple[dict, dict, list]:
    spec = stage.spec
    output = sdir / spec.produces
    argv = [inp.path, "-o", str(output), "--overwrite"] + stage.argv()
    if stage.kind == "prune":
        # outside the stage folder, which a changed budget deletes: scores are keyed by the weights, the
        # scoring settings and the operations already applied, never by the budget, so a rerun with another
        # --target-macs (or a second prune stage) re-selects from them instead of scoring again
        argv += ["--cache", str(state.out / SCORE_CACHE)]
    if stage.kind in ("finetune", "distill"):  # keyed by teacher weights and data settings, like the scores
        argv += ["--data-cache", str(state.out / TEACHER_CACHE)]
    if stage.kind == "finetune" and "teacher" not in stage.options:
        argv += ["--teacher", state.original.path]
    if stage.options.get("teacher") == ORIGINAL:  # `teacher: original` = the model the recipe started from
        argv[argv.index("--teacher") + 1] = state.original.path
    if state.allow_pickle and any(a.dest == "allow_pickle" for a in parser._actions):
        argv.append("--allow-pickle")
    args = _parse(parser, argv)
    args.func(args)
    metrics = {"size_bytes": weights_bytes(output)}
    metrics.update(_ARTIFACT_METRICS[stage.kind](output))
    return metrics, {"size_bytes": state.rows[0]["size_bytes"]}, argv


def _prune_metrics(model: Path) -> dict:
    from .compressor.plan import read_plan

    plan = read_plan(model / "unet")
    macs, params = plan.report["macs"], plan.report["params"]  # against the unpruned architecture, if chained
    return {"macs_kept": macs.get("kept_of_architecture", macs["kept"]),
            "params_kept": params.get("kept_of_architecture", params["kept"]),
            "operators": len(plan.operations)}


def _finetune_metrics(model: Path) -> dict:
    from .compressor.plan import read_plan

    history = read_plan(model / "unet").report.get("finetune", {}).get("history") or [{}]
    return {"final_loss": history[-1].get("loss", float("nan"))}


def _distill_metrics(model: Path) -> dict:
    from .lineage import read_lineage

    validation = (read_lineage(model) or {}).get("distill", {}).get("validation") or [{}]
    return {"ode_psnr_1step": validation[-1].get("latent_psnr_1step_db", float("nan"))}


def _vae_metrics(model: Path) -> dict:
    from .lineage import read_lineage

    parity = (read_lineage(model) or {}).get("distill_vae", {}).get("parity", {})
    return {"decoder_psnr": parity.get("decoder_psnr_db_mean", float("nan"))}


def _export_metrics(bundle: Path) -> dict:
    from .manifest import load_manifest

    worst = float("inf")
    for entry in load_manifest(bundle)["components"].values():
        for b in entry["backends"].values():
            for o in b["validation"].get("outputs", {}).values():
                if isinstance(o.get("psnr_db"), (int, float)):
                    worst = min(worst, o["psnr_db"])
    return {"validation_psnr_min": worst}


def _quantize_metrics(bundle: Path) -> dict:
    from .manifest import load_manifest

    m = load_manifest(bundle)
    q = m["quantization"]
    psnrs = [m["components"][c]["backends"][q["backend"]]["quantization"]["parity"].get("psnr_db")
             for c in q["components"]]
    psnrs = [p for p in psnrs if isinstance(p, (int, float))]
    return {"output_psnr_min": min(psnrs) if psnrs else float("nan"),
            "image_psnr_mean": q["image_parity"].get("psnr_db_mean", float("nan"))}


_ARTIFACT_METRICS = {"prune": _prune_metrics, "finetune": _finetune_metrics, "distill": _distill_metrics,
                     "distill-vae": _vae_metrics, "export": _export_metrics, "quantize": _quantize_metrics}


def bundle_backend(bundle: str | Path) -> str:
    from .manifest import default_backend, load_manifest

    return default_backend(load_manifest(Path(bundle)))


def _evaluate_stage(state: RunState, stage: Stage, sdir: Path, inp: Artifact, parser) -> tuple[dict, dict, list]:
    from .cli import evaluate_args

    argv = _measure_argv(state, stage, inp)
    result, _, _ = evaluate_args(_parse(parser, argv))
    _save_samples(sdir / SAMPLES, result.images, result.captions)
    metrics = _eval_metrics(result.metrics)
    (sdir / "eval.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    return metrics, _baseline_eval(state, stage, parser), argv


def _measure_argv(state: RunState, stage: Stage, inp: Artifact) -> list[str]:
    argv = [inp.path] + stage.argv()
    if inp.kind == "bundle" and "backend" not in stage.options:
        argv += ["--backend", bundle_backend(inp.path)]
    if state.allow_pickle and inp.kind == "model" and stage.kind == "evaluate":
        argv.append("--allow-pickle")
    return argv


def _eval_metrics(m: dict) -> dict:
    out = {f"{k}_accuracy": v for k, v in m["accuracy"].items()}
    out.update(fd=m["fd"], seconds_per_image=m["generation_seconds"] / max(m["images"], 1))
    return out


def _baseline_eval(state: RunState, stage: Stage, parser) -> dict:
    """The original model evaluated with the stage's prompts and seed, at its own steps and guidance."""
    from .cli import evaluate_args

    options = {k: v for k, v in stage.options.items() if k not in ("steps", "guidance", "scheduler", "backend")}
    probe = Stage("evaluate", options)
    key = hashlib.sha256(json.dumps([options_digest(probe), state.original.digest]).encode()).hexdigest()[:16]
    bdir = state.out / "00-baseline"
    cached = bdir / f"evaluate-{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["metrics"]
    logger.info("baseline: evaluating the original model %s", state.model)
    argv = [state.original.path] + probe.argv() + (["--allow-pickle"] if state.allow_pickle else [])
    result, _, _ = evaluate_args(_parse(parser, argv))
    bdir.mkdir(exist_ok=True)
    _save_samples(bdir / f"samples-{key}.npz", result.images, result.captions)
    metrics = _eval_metrics(result.metrics)
    atomic_write_text(cached, json.dumps({"argv": argv, "metrics": metrics, "eval": result.metrics}, indent=2) + "\n")
    return metrics


def _bench_stage(state: RunState, stage: Stage, sdir: Path, inp: Artifact, parser) -> tuple[dict, dict, list]:
    from .cli import bench_args

    argv = _measure_argv(state, stage, inp)
    if "vs" not in stage.options:
        argv += ["--vs", f"diffusers:{state.original.path}"]
    from .lineage import default_sampling_of

    own, original = default_sampling_of(inp.path), default_sampling_of(state.original.path)
    for key, value in (("steps", own["steps"]), ("guidance", own["guidance"]),
                       ("vs_steps", original["steps"]), ("vs_guidance", original["guidance"])):
        if key not in stage.options:
            argv += ["--" + key.replace("_", "-"), str(value)]
    result, samples = bench_args(_parse(parser, argv))
    atomic_write_text(sdir / "bench.json", json.dumps(result, indent=2) + "\n")
    _save_samples(sdir / SAMPLES, *samples)
    return _bench_metrics(result), _bench_metrics(result["vs"]), argv


def _bench_metrics(run: dict) -> dict:
    from .benchmarks.bench import figure_value

    f = run["figures"]
    out = {"image_latency": figure_value(f, "image_s"), "unet_step_latency": figure_value(f, "unet_step_s"),
           "text_encoder_latency": figure_value(f, "text_encoder_s"),
           "vae_decode_latency": figure_value(f, "vae_decode_s"), "cold_load": f["cold_load_s"],
           "peak_rss_bytes": f["peak_rss_bytes"], "size_bytes": f["size_bytes"],
           "unet_calls_per_image": f["unet_calls_per_image"]}
    if run.get("quality"):
        out.update(joint_accuracy=run["quality"]["accuracy"]["joint"], fd=run["quality"]["fd"])
    return out


_STAGE_RUNNERS = {**{k: _artifact_stage for k in _ARTIFACT_METRICS}, "evaluate": _evaluate_stage,
                  "bench": _bench_stage}
assert set(_STAGE_RUNNERS) == set(STAGE_KINDS)


def _save_samples(path: Path, images: np.ndarray, captions: list[str]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, images=np.asarray(images[:SAMPLE_IMAGES]),
                        captions=np.array(list(captions[:SAMPLE_IMAGES])))
    from .atomic import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def _stage_log(path: Path):
    """The stage's log records and printed output go to ``path`` (and still to the console)."""
    captured = io.StringIO()

    class _Tee(io.TextIOBase):
        def __init__(self, *streams):
            self.streams = streams

        def write(self, s):
            for st in self.streams:
                st.write(s)
            return len(s)

        def flush(self):
            for st in self.streams:
                st.flush()

    with open(path, "a", encoding="utf-8") as log_file:
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        try:
            with contextlib.redirect_stdout(_Tee(sys.stdout, log_file, captured)):
                yield captured
        finally:
            logger.removeHandler(handler)


# --- the end of a run ----------------------------------------------------------------------------


def _finish(state: RunState, final: Artifact | None, seconds: float | None, failed_at: str | None = None) -> dict:
    from .benchmarks.compress_report import write_report

    if final is not None and failed_at is None:
        _write_final_bundle(state, final)
    summary = {"schema": COMPRESS_SCHEMA, "model": state.model, "recipe": state.recipe.name,
               "output": str(state.out), "final_bundle": str(state.out / "bundle") if final and not failed_at else None,
               "failed_at": failed_at, "seconds": None if seconds is None else round(seconds, 1),
               "stages": [{k: r.get(k) for k in ("stage", "index", "status", "seconds", "metrics", "baseline",
                                                  "gates", "input_label")} for r in state.records],
               "rows": state.rows}
    write_report(state.out, summary)
    return summary


def _write_final_bundle(state: RunState, final: Artifact) -> None:
    """OUT/bundle: the last bundle (hard links where the filesystem allows) with the recipe in its manifest."""
    import os

    from .manifest import load_manifest

    with atomic_output_dir(state.out / "bundle", overwrite=True) as tmp:
        def link(src, dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(final.path, tmp, dirs_exist_ok=True, copy_function=link)
        manifest = load_manifest(Path(final.path))
        manifest["recipe"] = {**state.recipe.resolved(), "text": state.recipe.text, "model": state.model,
                              "model_digest": state.original.digest,
                              "stages": [{"stage": r["stage"], "argv": r.get("argv"), "key": r["key"],
                                          "metrics": r.get("metrics")} for r in state.records],
                              "from_stage": final.label}
        (tmp / "edgeldm.json").unlink()
        (tmp / "edgeldm.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"

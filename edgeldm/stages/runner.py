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

from ..atomic import atomic_output_dir, atomic_write_text
from ..errors import EdgeLDMError
from ..options import to_argv
from .common import short, weights_bytes
from .recipe import STAGE_KINDS, Recipe, Stage, load_recipe, options_digest

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
    from ..manifest import sha256_file

    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def source_digest(model: str) -> str:
    """A zoo name hashes its embedded folder (configs, or shipped weights); a folder its content."""
    from ..zoo import ZOO

    if model in ZOO and not Path(model).exists():
        return "zoo:" + tree_digest(ZOO[model].folder)
    path = Path(model)
    if not path.exists():
        raise EdgeLDMError(f"{model} does not exist", hint="pass a diffusers folder or a zoo name (edgeldm zoo list)")
    return tree_digest(path)


def model_bytes(model: str, info: dict) -> int:
    """Weight bytes of a model on disk; a random-weight preset counts what its fp32 weights would take
    (``info``: the model's ``describe_model``)."""
    from ..zoo import ZOO

    if Path(model).is_file():  # a single-file checkpoint: all of it is weights
        return Path(model).stat().st_size
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


def compress(model: str | Path, recipe: Recipe | str | Path, out: str | Path, *, resume: bool = False,
             overwrite: bool = False, allow_pickle: bool = False, overrides: tuple[str, ...] = ()) -> dict:
    """Run ``recipe`` (a :class:`Recipe`, a YAML file or a shipped recipe's name; ``overrides`` are
    ``STAGE.KEY=VALUE``) on ``model`` into the run folder ``out``; returns the summary (also
    ``out/report/summary.json``). ``resume`` reuses finished stages whose inputs and options are unchanged."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(str(recipe), tuple(overrides))
    elif overrides:
        raise EdgeLDMError("overrides apply to a recipe loaded by name: pass the name or apply them yourself")
    if resume and overwrite:
        raise EdgeLDMError("--resume and --overwrite exclude each other")
    model = str(model)
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
    from ..info import describe_model

    info = describe_model(model, allow_pickle=allow_pickle)  # UNet MACs: the counter of `edgeldm info`
    state.original = Artifact(model, "model", digest, "original", int(info["unet"]["macs_per_step"]))
    state.current["model"] = state.latest = state.original
    state.rows.append({"label": "original", "stage": "original", "path": model, "kind": "model",
                       "size_bytes": model_bytes(model, info), "macs": state.original.macs})
    for index, stage in enumerate(recipe.stages, 1):
        _run_one(state, index, stage)
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


def _run_one(state: RunState, index: int, stage: Stage) -> None:
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
        record = _execute(state, index, stage, sdir, inp, key)
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


def _execute(state: RunState, index: int, stage: Stage, sdir: Path, inp: Artifact, key: str) -> dict:
    spec = stage.spec
    sdir.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage.kind, "index": index, "status": "running", "key": key, "input": inp.path,
              "input_label": inp.label, "input_digest": inp.digest, "options": stage.options, "started": _now(),
              "artifact": spec.produces, "gates": []}
    _write_record(sdir, record)
    t0 = time.perf_counter()
    try:
        with _stage_log(sdir / "log.txt") as captured:
            metrics, baseline, argv = _STAGE_RUNNERS[stage.kind](state, stage, sdir, inp)
            # the stage's one-line outcome, on the console and in its log (the equivalent command first)
            print(f"edgeldm {stage.spec.command} {' '.join(argv)}\n  -> "
                  + ", ".join(f"{k} {short(v)}" for k, v in metrics.items()))
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
        if stage.kind == "convert":  # the adapters baked in: teachers and baselines start from this model
            state.original = art
        state.rows.append({"label": sdir.name, "stage": stage.kind, "path": path, "kind": spec.produces,
                           "size_bytes": record["metrics"]["size_bytes"], "macs": macs})
        return
    row = next(r for r in reversed(state.rows) if r["label"] == inp.label)
    row[stage.kind] = record["metrics"]
    state.rows[0].setdefault(stage.kind, record["baseline"])


# --- stage runners -------------------------------------------------------------------------------
# Each calls its stage function with the recipe's options and what the runner decides (input, output in the
# stage folder, caches shared across stages); ``argv`` is the equivalent command line, kept in the record.


def _artifact_stage(state: RunState, stage: Stage, sdir: Path, inp: Artifact) -> tuple[dict, dict, list]:
    output = sdir / stage.spec.produces
    options = dict(stage.options)
    kwargs: dict = {"overwrite": True}
    if stage.kind == "prune":
        # outside the stage folder, which a changed budget deletes: scores are keyed by the weights, the
        # scoring settings and the operations already applied, never by the budget, so a rerun with another
        # --target-macs (or a second prune stage) re-selects from them instead of scoring again
        kwargs["cache_dir"] = state.out / SCORE_CACHE
    if stage.kind in ("finetune", "distill"):  # keyed by teacher weights and data settings, like the scores
        kwargs["data_cache"] = state.out / TEACHER_CACHE
    if stage.kind == "finetune" and "teacher" not in options:
        options["teacher"] = state.original.path
    if options.get("teacher") == ORIGINAL:  # `teacher: original` = the model the recipe started from
        options["teacher"] = state.original.path
    if stage.spec.consumes == "model":  # bundles hold no pickles
        kwargs["allow_pickle"] = state.allow_pickle
    result = stage.spec.run(inp.path, output, Stage(stage.kind, options).build(), **kwargs)
    argv = [inp.path, "-o", str(output), "--overwrite"] + to_argv(stage.spec.options, options)
    return result.metrics, {"size_bytes": state.rows[0]["size_bytes"]}, argv


def bundle_backend(bundle: str | Path) -> str:
    from ..manifest import default_backend, load_manifest

    return default_backend(load_manifest(Path(bundle)))


def _measure_options(stage: Stage, inp: Artifact) -> dict:
    options = dict(stage.options)
    if inp.kind == "bundle" and "backend" not in options:
        options["backend"] = bundle_backend(inp.path)
    return options


def _evaluate_stage(state: RunState, stage: Stage, sdir: Path, inp: Artifact) -> tuple[dict, dict, list]:
    options = _measure_options(stage, inp)
    result = stage.spec.run(inp.path, Stage("evaluate", options).build(), allow_pickle=state.allow_pickle)
    _save_samples(sdir / SAMPLES, result.extra["result"].images, result.extra["result"].captions)
    (sdir / "eval.json").write_text(json.dumps(result.details, indent=2) + "\n")
    argv = [inp.path] + to_argv(stage.spec.options, options)
    return result.metrics, _baseline_eval(state, stage), argv


def _baseline_eval(state: RunState, stage: Stage) -> dict:
    """The original model evaluated with the stage's prompts and seed, at its own steps and guidance."""
    options = {k: v for k, v in stage.options.items() if k not in ("steps", "guidance", "scheduler", "backend")}
    probe = Stage("evaluate", options)
    key = hashlib.sha256(json.dumps([options_digest(probe), state.original.digest]).encode()).hexdigest()[:16]
    bdir = state.out / "00-baseline"
    cached = bdir / f"evaluate-{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["metrics"]
    logger.info("baseline: evaluating the original model %s", state.model)
    result = stage.spec.run(state.original.path, probe.build(), allow_pickle=state.allow_pickle)
    bdir.mkdir(exist_ok=True)
    _save_samples(bdir / f"samples-{key}.npz", result.extra["result"].images, result.extra["result"].captions)
    argv = [state.original.path] + probe.argv()
    atomic_write_text(cached, json.dumps({"argv": argv, "metrics": result.metrics, "eval": result.details},
                                         indent=2) + "\n")
    return result.metrics


def _bench_stage(state: RunState, stage: Stage, sdir: Path, inp: Artifact) -> tuple[dict, dict, list]:
    from ..lineage import default_sampling_of

    options = _measure_options(stage, inp)
    options.setdefault("vs", f"diffusers:{state.original.path}")
    own, original = default_sampling_of(inp.path), default_sampling_of(state.original.path)
    for key, value in (("steps", own["steps"]), ("guidance", own["guidance"]),
                       ("vs_steps", original["steps"]), ("vs_guidance", original["guidance"])):
        options.setdefault(key, value)
    argv = [inp.path] + to_argv(stage.spec.options, options)
    result = stage.spec.run(inp.path, Stage("bench", options).build(), command=" ".join(["edgeldm", "bench"] + argv))
    atomic_write_text(sdir / "bench.json", json.dumps(result.details, indent=2) + "\n")
    _save_samples(sdir / SAMPLES, *result.extra["samples"])
    return result.metrics, result.extra["baseline"], argv


_STAGE_RUNNERS = {**{k: _artifact_stage for k, spec in STAGE_KINDS.items() if spec.produces},
                  "evaluate": _evaluate_stage, "bench": _bench_stage}
assert set(_STAGE_RUNNERS) == set(STAGE_KINDS)


def _save_samples(path: Path, images: np.ndarray, captions: list[str]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, images=np.asarray(images[:SAMPLE_IMAGES]),
                        captions=np.array(list(captions[:SAMPLE_IMAGES])))
    from ..atomic import atomic_write_bytes

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
    from ..benchmarks.compress_report import write_report

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

    from ..manifest import load_manifest

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

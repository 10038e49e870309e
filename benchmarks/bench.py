"""``edgeldm bench``: latency per component, memory, size and quality of one target, or two side by side.

The result is one JSON document (schema ``edgeldm.bench/1``, documented in ``docs/bench-schema.md``)::

    {"schema", "created", "command", "config",
     "target": {spec, kind, location, backend, device, source},
     "fingerprint": {cpu, cores, threads, os, machine, python, backend, device, gpu, versions, id},
     "figures": {cold_load_s, peak_rss_bytes, size_bytes,                       # one value each
                 image_s, text_encoder_s, unet_step_s, vae_decode_s: {median, p90, min, max, repeat, warmup}},
     "samples": {image_s: [...], ...},           # the raw per-repeat seconds
     "quality": {...} | null,                    # `edgeldm eval` metrics when the target derives from tiny
     "vs": {target, fingerprint, figures, samples, quality, config} | null,   # config: vs's own sampling
     "ratios": {figure: {"per_pair": [...], "median": r}} | null}   # this / vs, per alternated pair

Ratios are the only way figures are compared: with ``vs`` both targets run alternately (A B A B …), each
in its own process, and every figure's ratio is taken per pair.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import re
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import EdgeLDMError
from ..lineage import derives_from_scenes
from .targets import BENCH_PROMPT, BenchConfig
from .timing import summarize

logger = logging.getLogger("edgeldm")
BENCH_SCHEMA = "edgeldm.bench/1"
#: per-image figures timed every repeat (seconds)
TIMED_FIGURES = ("image_s", "text_encoder_s", "unet_step_s", "vae_decode_s")
#: the resident peak during each component's calls, by component (None where the OS cannot tell)
COMPONENT_PEAK_FIGURES = {"text_encoder": "text_encoder_peak_rss_bytes", "unet": "unet_peak_rss_bytes",
                          "vae_decoder": "vae_decode_peak_rss_bytes"}
#: figures the regression gate checks: latency (medians) and memory; lower is better for all
GATED_FIGURES = ("image_s", "unet_step_s", "text_encoder_s", "vae_decode_s", "cold_load_s", "peak_rss_bytes",
                 *COMPONENT_PEAK_FIGURES.values())
DEFAULT_QUALITY_PROMPTS = 50
SHEET_IMAGES = 8
QUALITY_CHUNK = 10  # quality prompts per request to a target's process
#: pause before each image when two targets alternate: ONNX Runtime's and OpenVINO's thread pools keep
#: spinning for a while after a call, and would otherwise steal the cores from the other target's first
#: calls (measured: diffusers' text encoder 1.7 ms alone, 55 ms right after an ORT image on 2 cores)
SETTLE_S = 0.25  # sample images per target kept for contact sheets


# --- running -------------------------------------------------------------------------------------


def run_bench(spec: str, config: BenchConfig = BenchConfig(), *, vs: str | None = None,
              vs_config: BenchConfig | None = None, command: str = "") -> tuple[dict, tuple[np.ndarray, list[str]]]:
    """Benchmark ``spec`` (and ``vs`` alternately); returns the result document and sample images.

    ``vs_config`` (default: ``config``) lets the two sides sample differently — a 4-step distilled bundle
    against its 25-step guided teacher is the comparison a user of few-step sampling wants — and warm up
    differently (``warmup`` per side; ``repeat`` is ``config``'s: the pairs are what is counted).

    The samples (uint8 images n x H x W x 3, and a caption each) are the first quality images when
    quality was measured, else the last timed image: what a contact sheet shows.
    """
    from ..progress import progress_bar
    from .worker import TargetProcess

    specs = [spec] + ([vs] if vs else [])
    configs = [config] + ([vs_config or config] if vs else [])
    if config.repeat < 1 or min(c.warmup for c in configs) < 0:
        raise EdgeLDMError(f"--repeat must be >= 1 and --warmup >= 0, got {config.repeat}, "
                           f"{' / '.join(str(c.warmup) for c in configs)}")
    procs = [TargetProcess(s, c) for s, c in zip(specs, configs)]
    try:
        loads = []
        for p in procs:  # one after the other: a cold load must not compete with another for the CPU
            logger.info("loading %s", p.spec)
            loads.append(p.load())
        samples = [{f: [] for f in TIMED_FIGURES} for _ in procs]
        unet_calls, last = [0] * len(procs), [None] * len(procs)
        warmups = [c.warmup for c in configs]
        logger.info("timing %d image(s) per target after %s warm-up", config.repeat,
                    " / ".join(str(w) for w in warmups))
        with progress_bar(total=sum(warmups) + config.repeat * len(procs), desc="timing", unit="img") as bar:
            # each side its own warm-up count: a cheap side can be warmed beside one whose image takes minutes
            for i in range(max(warmups)):
                for p, w in zip(procs, warmups):
                    if i < w:
                        p.image(0)
                        bar.update(1)
            for r in range(config.repeat):
                for k, p in enumerate(procs):  # A B A B …: machine noise hits both alike
                    if len(procs) > 1:
                        time.sleep(SETTLE_S)
                    out = p.image(r)
                    for f in TIMED_FIGURES:
                        samples[k][f].append(out[f])
                    unet_calls[k], last[k] = out["unet_calls"], out["image"]
                    bar.update(1)
        memory = [p.peak_memory() for p in procs]  # before quality: that may load more than inference needs
        runs, sheets = [], []
        for k, p in enumerate(procs):
            quality, images, captions = _quality(p, loads[k]["source"], configs[k])
            if images is None:
                images, captions = last[k][None], [BENCH_PROMPT]
            sheets.append((images[:SHEET_IMAGES], [f"{p.spec}: {c}" if vs else c for c in captions[:SHEET_IMAGES]]))
            figures = {"cold_load_s": loads[k]["cold_load_s"], "peak_rss_bytes": memory[k]["peak_rss_bytes"],
                       **component_peaks(memory[k]["components"]),
                       "size_bytes": loads[k]["size_bytes"], "unet_calls_per_image": unet_calls[k]}
            figures.update({f: summarize(samples[k][f], configs[k].warmup).to_dict() for f in TIMED_FIGURES})
            runs.append({"target": {**loads[k]["describe"], "source": loads[k]["source"]},
                         "fingerprint": _fingerprint(loads[k]["describe"], configs[k]), "figures": figures,
                         "samples": samples[k], "quality": quality})
    finally:
        for p in procs:
            p.close()
    result = {"schema": BENCH_SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "run_id": uuid.uuid4().hex, "command": command, "config": asdict(config), **runs[0], "vs": None,
              "ratios": None}
    if vs:
        result["vs"] = {**runs[1], "config": asdict(configs[1])}
        result["ratios"] = pair_ratios(runs[0], runs[1])
    if not vs:
        return result, sheets[0]
    a, b = sheets[0][0], sheets[1][0]
    if a.shape[1:] != b.shape[1:]:  # e.g. a fixed-size bundle against its model at the model's own size
        from PIL import Image

        b = np.stack([np.asarray(Image.fromarray(im).resize((a.shape[2], a.shape[1]), Image.BICUBIC)) for im in b])
    return result, (np.concatenate([a, b]), sheets[0][1] + sheets[1][1])


def component_peaks(peaks: dict) -> dict:
    """The per-component peak figures of a target's ``peak_memory()["components"]``."""
    return {figure: peaks.get(component) for component, figure in COMPONENT_PEAK_FIGURES.items()}


def _fingerprint(describe: dict, config: BenchConfig) -> dict:
    from .fingerprint import device_fingerprint

    return device_fingerprint(backend=describe["backend"], device=describe["device"], threads=config.threads)


def _quality(proc, source: str, config: BenchConfig):
    n = config.quality_prompts
    if n is None:
        n = DEFAULT_QUALITY_PROMPTS if derives_from_scenes(source) else 0
    if n == 0:
        return None, None, None
    if n < 2:
        raise EdgeLDMError(f"--quality-prompts must be 0 (off) or at least 2, got {n}")
    from .evaluate import EvalConfig, eval_set, score_images

    eval_config = EvalConfig(prompts=n, steps=config.steps, guidance=config.guidance)
    captions, scenes, seeds = eval_set(eval_config)
    from ..progress import progress_bar

    logger.info("quality: %d held-out prompts through %s", n, proc.spec)
    images, seconds = [], 0.0
    with progress_bar(total=n, desc="quality", unit="img") as bar:
        for i in range(0, n, QUALITY_CHUNK):  # in chunks, so that the bar moves
            out = proc.generate(captions[i:i + QUALITY_CHUNK], seeds[i:i + QUALITY_CHUNK])
            images.append(out["images"])
            seconds += out["seconds"]
            bar.update(len(out["images"]))
    images = np.concatenate(images)
    metrics, _ = score_images(images, scenes, eval_config)
    metrics["generation_seconds"] = round(seconds, 2)
    return metrics, images, captions


def pair_ratios(a: dict, b: dict) -> dict:
    ratios = {}
    for f in TIMED_FIGURES:
        per_pair = [x / y if y else math.nan for x, y in zip(a["samples"][f], b["samples"][f])]
        ratios[f] = {"per_pair": per_pair, "median": float(np.nanmedian(per_pair)) if per_pair else math.nan}
    for f in ("cold_load_s", "peak_rss_bytes", *COMPONENT_PEAK_FIGURES.values(), "size_bytes"):
        x, y = a["figures"].get(f), b["figures"].get(f)
        ratios[f] = {"per_pair": [], "median": x / y if x is not None and y else math.nan}
    return ratios


def figure_value(figures: dict, name: str) -> float:
    value = figures[name]
    return float(value["median"] if isinstance(value, dict) else value)


# --- history -------------------------------------------------------------------------------------


def append_history(result: dict, history: Path, samples: tuple[np.ndarray, list[str]] | None = None) -> Path:
    """Store under ``HISTORY/<fingerprint id>/<time>-<target>.json`` (+ ``.png`` contact sheet); atomic."""
    from ..atomic import atomic_write_text

    folder = Path(history) / result["fingerprint"]["id"]
    folder.mkdir(parents=True, exist_ok=True)
    stamp = re.sub(r"[^0-9T]", "", result["created"].split("+")[0])
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{result['target']['kind']}-{Path(result['target']['location']).name}")
    stem = folder / f"{stamp}-{name}"
    k = 1
    while stem.with_suffix(".json").exists():
        k += 1
        stem = folder / f"{stamp}-{name}-{k}"
    if samples is not None:
        result = {**result, "sheet": stem.with_suffix(".png").name}
        write_sheet(samples, stem.with_suffix(".png"))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    return stem.with_suffix(".json")


def write_sheet(samples: tuple[np.ndarray, list[str]], path: Path) -> Path:
    from .contact_sheet import contact_sheet

    images, captions = samples
    return contact_sheet(images, captions, path, columns=4, scale=2 if images.shape[1] <= 128 else 1)


def load_results(path: Path) -> list[tuple[Path, dict]]:
    """Every bench result under ``path`` (a JSON file or a history folder), oldest first."""
    path = Path(path)
    if not path.exists():
        raise EdgeLDMError(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(path.rglob("*.json"))
    results = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise EdgeLDMError(f"{f} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
            if path.is_file():
                raise EdgeLDMError(f"{f} is not an edgeldm bench result (schema {BENCH_SCHEMA})")
            continue
        results.append((f, doc))
    if not results:
        raise EdgeLDMError(f"no bench results ({BENCH_SCHEMA}) in {path}")
    return sorted(results, key=lambda fd: (fd[1]["created"], str(fd[0])))


# --- the regression gate -------------------------------------------------------------------------


def parse_regression(text: str) -> float:
    """``"10%"`` or ``"0.1"`` -> 0.1."""
    percent = text.strip().endswith("%")
    try:
        value = float(text.strip()[:-1]) / 100 if percent else float(text)
    except ValueError:
        raise EdgeLDMError(f"an allowed regression must look like 10% or 0.1, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise EdgeLDMError(f"an allowed regression must be a finite amount >= 0, got {text!r}")
    if not percent and value > 1:  # "10" is 10 % or 1000 %: refuse to guess
        raise EdgeLDMError(f"allowed regression {text!r} is ambiguous", hint="write 10% (or the fraction 0.1)")
    return value


def same_run(a: dict, b: dict) -> bool:
    """One measurement, whatever copies of it were made (a history entry gains a ``sheet`` and a ``gate``)."""
    if a.get("run_id") or b.get("run_id"):
        return a.get("run_id") == b.get("run_id")
    drop = ("sheet", "gate")
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


_SELF_HINT = ("compare a new result with the history before appending it: `edgeldm bench TARGET --history DIR "
              "--gate 10%` does both in that order (or run `bench compare NEW DIR` before `bench --history DIR`)")


def pick_baseline(new: dict, baseline_path: Path, *, missing_ok: bool = False) -> dict | None:
    """A file is the baseline; in a history folder, the latest result of the same device and target that passed
    its gate. Comparing a result with itself is refused: it always passes."""
    candidates = [d for _, d in load_results(baseline_path)] if Path(baseline_path).exists() or not missing_ok \
        else []
    if len(candidates) == 1 and Path(baseline_path).is_file():
        if same_run(candidates[0], new):
            raise EdgeLDMError(f"{baseline_path} is the new result itself (run {new.get('run_id', '?')}): the "
                               "comparison would always pass", hint=_SELF_HINT)
        return candidates[0]
    same = [d for d in candidates if d["fingerprint"]["id"] == new["fingerprint"]["id"]
            and _target_key(d) == _target_key(new) and d["created"] <= new["created"]
            and (d.get("gate") or {}).get("passed") is not False]  # a regressed run never becomes the baseline
    if same and same_run(same[-1], new):
        raise EdgeLDMError(f"the latest result in {baseline_path} for this device and target is the new result "
                           f"itself (run {new.get('run_id', '?')}): it was appended before the comparison, which "
                           "would always pass", hint=_SELF_HINT)
    if not same:
        if missing_ok:
            return None
        raise EdgeLDMError(f"no baseline in {baseline_path} for device {new['fingerprint']['id']} and target "
                           f"{new['target']['spec']}", hint="bench the baseline with --history on this device first")
    return same[-1]


def gate(new: dict, history: Path, max_regression: float, figures=GATED_FIGURES) -> dict | None:
    """``new`` against the latest passing result in ``history`` (before ``new`` is appended); None when the
    history has no result of this device and target yet (``new`` becomes the first baseline)."""
    baseline = pick_baseline(new, history, missing_ok=True)
    if baseline is None:
        return None
    rows = compare(new, baseline, max_regression, figures)
    return {"baseline_run_id": baseline.get("run_id"), "baseline_created": baseline["created"],
            "max_regression": max_regression, "rows": rows, "passed": not any(r["regressed"] for r in rows)}


def _target_key(doc: dict) -> tuple:
    """Results are comparable when they measured the same thing the same way: target and sampling settings."""
    t, c = doc["target"], doc.get("config", {})
    return (t["kind"], t["backend"], Path(t["location"]).name, t.get("source"),
            tuple(c.get(k) for k in ("steps", "guidance", "height", "width", "threads")),
            bool(c.get("low_memory")), c.get("vae_tile"),  # results from before these options ran without them
            c.get("inference_precision"))


def compare(new: dict, baseline: dict, max_regression: float, figures=GATED_FIGURES) -> list[dict]:
    """One row per figure: new, baseline, ratio, and whether it regressed by more than allowed."""
    if new["fingerprint"]["id"] != baseline["fingerprint"]["id"]:
        logger.warning("comparing results from different devices (%s vs %s): the ratios mix hardware",
                       new["fingerprint"]["id"], baseline["fingerprint"]["id"])
    rows = []
    for f in figures:
        if new["figures"].get(f) is None or baseline["figures"].get(f) is None:
            continue  # older results, or an OS that cannot tell a component's peak
        a, b = figure_value(new["figures"], f), figure_value(baseline["figures"], f)
        ratio = a / b if b else math.inf
        rows.append({"figure": f, "new": a, "baseline": b, "ratio": ratio,
                     "regressed": bool(ratio > 1.0 + max_regression)})
    return rows


# --- text ----------------------------------------------------------------------------------------


def _fmt(figure: str, value: float) -> str:
    if figure.endswith("_bytes"):
        return f"{value / 2**20:,.1f} MiB"
    return f"{value * 1000:,.2f} ms" if value < 1 else f"{value:,.3f} s"


def markdown_summary(result: dict) -> str:
    """A Markdown table of one result (and its side-by-side peer) for CI logs."""
    t, fp = result["target"], result["fingerprint"]
    head = f"### edgeldm bench: `{t['spec']}`"
    cols = ["figure", f"`{t['spec']}`"]
    if result.get("vs"):
        head += f" vs `{result['vs']['target']['spec']}`"
        cols += [f"`{result['vs']['target']['spec']}`", "ratio (median per pair)"]
    lines = [head, "", f"{fp['cpu']} · {fp['cores']} cores · threads {fp['threads'] or 'default'} · "
             f"{fp['os']} · {t['backend']} on {t['device']} · steps {result['config']['steps']}, "
             f"guidance {result['config']['guidance']}", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for f in ("image_s", "unet_step_s", "text_encoder_s", "vae_decode_s", "cold_load_s", "peak_rss_bytes",
              *COMPONENT_PEAK_FIGURES.values(), "size_bytes"):
        if result["figures"].get(f) is None or (result.get("vs") and result["vs"]["figures"].get(f) is None):
            continue
        row = [f, _fmt(f, figure_value(result["figures"], f))]
        if result.get("vs"):
            row += [_fmt(f, figure_value(result["vs"]["figures"], f)), f"{result['ratios'][f]['median']:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    for label, run in (("", result), ("vs ", result.get("vs"))):
        q = run and run.get("quality")
        if q:
            acc = q["accuracy"]
            lines.append(f"\n{label}quality ({q['images']} held-out prompts): joint {acc['joint']:.1%}, shape "
                         f"{acc['shape']:.1%}, colour {acc['color']:.1%}, position {acc['position']:.1%}, "
                         f"size {acc['size']:.1%}, Fréchet distance {q['fd']:.1f}")
    return "\n".join(lines) + "\n"


def markdown_compare(rows: list[dict], max_regression: float, new: dict, baseline: dict) -> str:
    lines = [f"### edgeldm bench compare: `{new['target']['spec']}` ({new['created']}) vs baseline "
             f"({baseline['created']}), allowed regression {max_regression:.0%}", "",
             "| figure | new | baseline | ratio | |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['figure']} | {_fmt(r['figure'], r['new'])} | {_fmt(r['figure'], r['baseline'])} | "
                     f"{r['ratio']:.3f} | {'**REGRESSED**' if r['regressed'] else 'ok'} |")
    return "\n".join(lines) + "\n"

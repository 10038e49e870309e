"""The report of an ``edgeldm compress`` run: ``OUT/report/`` with Markdown, HTML, a plot and a contact sheet.

One row per artifact (the original, then every stage that made a model or a bundle) with what was measured
on it: size on disk, UNet MACs per step, latency per step and per image (bench stages), prompt accuracy and
Fréchet distance (evaluate and bench stages). Ratios are against the original, measured in the same run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

COLUMNS = ("artifact", "size", "UNet MACs/step", "UNet step", "image", "joint accuracy", "FD", "eval s/image")


def summary_rows(summary: dict) -> list[dict]:
    """Per artifact: display strings, and the raw numbers the plot needs."""
    rows = summary["rows"]
    base = rows[0]
    base_bench = base.get("bench") or {}
    out = []
    for r in rows:
        bench, ev = r.get("bench") or {}, r.get("evaluate") or {}
        quality = ev if "joint_accuracy" in ev else bench
        ref = r is not base  # the original's own row shows no ratios
        cells = {
            "artifact": f"{r['label']} ({r['kind']})",
            "size": _ratio_cell(r.get("size_bytes"), ref and base.get("size_bytes"), lambda v: f"{v / 2**20:.1f} MiB"),
            "UNet MACs/step": _ratio_cell(r.get("macs"), ref and base.get("macs"), lambda v: f"{v / 1e6:,.1f} M"),
            "UNet step": _ratio_cell(bench.get("unet_step_latency"), ref and base_bench.get("unet_step_latency"),
                                     lambda v: f"{v * 1000:.2f} ms"),
            "image": _ratio_cell(bench.get("image_latency"), ref and base_bench.get("image_latency"),
                                 lambda v: f"{v * 1000:.1f} ms"),
            "joint accuracy": _ratio_cell(quality.get("joint_accuracy"),
                                          ref and _base_quality(base, "joint_accuracy"), lambda v: f"{100 * v:.1f} %"),
            "FD": "" if quality.get("fd") is None else f"{quality['fd']:.1f}",
            "eval s/image": "" if ev.get("seconds_per_image") is None else f"{ev['seconds_per_image'] * 1000:.1f} ms",
        }
        out.append({"cells": cells, "row": r, "quality": quality})
    return out


def _base_quality(base: dict, key: str):
    for src in ("evaluate", "bench"):
        if key in (base.get(src) or {}):
            return base[src][key]
    return None


def _ratio_cell(value, base, fmt) -> str:
    if value is None:
        return ""
    text = fmt(value)
    if base:
        text += f" ({value / base:.3g}x)"
    return text


def headline(summary: dict) -> dict:
    """The demo's figures: final bundle vs original — latency ratio, size ratio, accuracy ratio (None: unmeasured)."""
    rows = summary["rows"]
    base = rows[0]
    final = next((r for r in reversed(rows) if r["kind"] == "bundle"), rows[-1])
    out = {"final": final["label"]}
    bench = final.get("bench") or {}
    if bench.get("image_latency") and (base.get("bench") or {}).get("image_latency"):
        out["speedup_per_image"] = base["bench"]["image_latency"] / bench["image_latency"]
    if final.get("size_bytes") and base.get("size_bytes"):
        out["size_ratio"] = final["size_bytes"] / base["size_bytes"]
    q = (final.get("evaluate") or {}).get("joint_accuracy", bench.get("joint_accuracy"))
    b = _base_quality(base, "joint_accuracy")
    if q is not None and b:
        out.update(joint_accuracy=q, baseline_joint_accuracy=b, accuracy_ratio=q / b)
    return out


def markdown_table(summary: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in summary_rows(summary):
        lines.append("| " + " | ".join(r["cells"][c] for c in COLUMNS) + " |")
    return "\n".join(lines)


def _stage_lines(summary: dict) -> list[str]:
    lines = []
    for s in summary["stages"]:
        gates = "; ".join(("✔ " if g["ok"] else "✘ ") + g["message"] for g in s.get("gates") or [])
        seconds = "cached" if s.get("seconds") is None else f"{s['seconds']:.0f} s"
        lines.append(f"{s['index']:02d} {s['stage']:9s} {s.get('status', '?'):6s} {seconds:>8s}  {gates}")
    return lines


def write_report(out: Path, summary: dict) -> Path:
    report = Path(out) / "report"
    report.mkdir(parents=True, exist_ok=True)
    from ..atomic import atomic_write_text

    plot = _plot(summary, report / "latency_quality.png")
    sheet = _sheet(Path(out), summary, report / "contact_sheet.png")
    head = headline(summary)
    summary = {**summary, "headline": head}
    md = [f"# edgeldm compress: {summary['model']} with recipe `{summary['recipe']}`", ""]
    if summary.get("failed_at"):
        md += [f"**Stopped at {summary['failed_at']}: a quality gate failed.**", ""]
    md += [markdown_table(summary), "", "Ratios (in brackets) are against the original, measured in this run; "
           "latency from the bench stages (median end-to-end image and UNet step, the original with its own "
           "steps and guidance), quality from evaluate stages (else bench's).", "", "## Stages", "", "```",
           *_stage_lines(summary), "```", ""]
    if "speedup_per_image" in head or "size_ratio" in head or "accuracy_ratio" in head:
        md += ["## Final bundle vs original", ""]
        if "speedup_per_image" in head:
            md.append(f"- image latency: **{head['speedup_per_image']:.1f}x faster**")
        if "size_ratio" in head:
            md.append(f"- size: **{head['size_ratio']:.3f}x**")
        if "accuracy_ratio" in head:
            md.append(f"- joint prompt accuracy: **{100 * head['joint_accuracy']:.1f} %** vs "
                      f"{100 * head['baseline_joint_accuracy']:.1f} % ({100 * head['accuracy_ratio']:.0f} % of it)")
        md.append("")
    if summary.get("seconds") is not None:
        md += [f"Wall time: {summary['seconds']:.0f} s.", ""]
    if plot:
        md += ["![latency vs quality](latency_quality.png)", ""]
    if sheet:
        md += ["![same prompts and seeds, original and compressed](contact_sheet.png)", ""]
    atomic_write_text(report / "report.md", "\n".join(md))
    atomic_write_text(report / "report.html", _html(summary, plot, sheet))
    atomic_write_text(report / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return report


def _html(summary: dict, plot: bool, sheet: bool) -> str:
    e = html.escape
    rows = summary_rows(summary)
    table = ["<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in COLUMNS) + "</tr>"]
    for r in rows:
        table.append("<tr>" + "".join(f"<td>{e(r['cells'][c])}</td>" for c in COLUMNS) + "</tr>")
    table.append("</table>")
    parts = ["<!doctype html><meta charset='utf-8'>",
             f"<title>edgeldm compress {e(summary['recipe'])}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}</style>",
             f"<h1>edgeldm compress: {e(summary['model'])} with <code>{e(summary['recipe'])}</code></h1>"]
    if summary.get("failed_at"):
        parts.append(f"<p><b>Stopped at {e(summary['failed_at'])}: a quality gate failed.</b></p>")
    parts += table + ["<h2>Stages</h2><pre>" + e("\n".join(_stage_lines(summary))) + "</pre>"]
    if plot:
        parts.append("<h2>Latency vs quality</h2><img src='latency_quality.png' alt='latency vs quality'>")
    if sheet:
        parts.append("<h2>Same prompts and seeds</h2><img src='contact_sheet.png' alt='contact sheet'>")
    return "\n".join(parts) + "\n"


def _plot(summary: dict, path: Path) -> bool:
    """Quality against time per image: evaluate stages' generation time, and bench stages' image latency
    (with the accuracy evaluate measured on the same artifact, else bench's own)."""
    points = {"evaluate": [], "bench": []}
    for r in summary["rows"]:
        ev, bench = r.get("evaluate") or {}, r.get("bench") or {}
        if "joint_accuracy" in ev and ev.get("seconds_per_image"):
            points["evaluate"].append((ev["seconds_per_image"] * 1000, 100 * ev["joint_accuracy"], r["label"]))
        quality = ev.get("joint_accuracy", bench.get("joint_accuracy"))  # evaluate's, else bench's own
        if quality is not None and bench.get("image_latency"):
            points["bench"].append((bench["image_latency"] * 1000, 100 * quality, r["label"]))
    if not any(points.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"evaluate": ("o", "#2b8cbe", "evaluate: generation time per image (batched)"),
              "bench": ("s", "#e6550d", "bench: end-to-end image latency (batch 1)")}
    for kind, pts in points.items():
        if not pts:
            continue
        marker, color, label = styles[kind]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=label, zorder=3)
        for x, y, name in pts:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per image (log)")
    ax.set_ylabel("joint prompt accuracy (%)")
    ax.set_title(f"latency vs quality — {summary['recipe']}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _sheet(out: Path, summary: dict, path: Path) -> bool:
    """The same prompts and seeds through the original and every evaluated artifact, one row each."""
    sources = sorted((out / "00-baseline").glob("samples-*.npz"))[:1]
    sources += [out / f"{s['index']:02d}-{s['stage']}" / "samples.npz" for s in summary["stages"]
                if s["stage"] == "evaluate"]
    images, captions = [], []
    for src in sources:
        if not src.is_file():
            continue
        with np.load(src) as data:
            label = "original" if src.parent.name == "00-baseline" else _evaluated_label(summary, src.parent.name)
            images.append(data["images"])
            captions += [f"{label}: {c}" for c in data["captions"].tolist()]
    if not images or len({im.shape[1:] for im in images}) != 1:
        return False
    from .contact_sheet import contact_sheet

    contact_sheet(np.concatenate(images), captions, path, columns=len(images[0]))
    return True


def _evaluated_label(summary: dict, folder: str) -> str:
    index = int(folder.split("-")[0])
    stage = next(s for s in summary["stages"] if s["index"] == index)
    return stage.get("input_label") or folder

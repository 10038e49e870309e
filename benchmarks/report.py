"""``edgeldm bench report``: a static page from a bench history (PNG charts via matplotlib + one HTML).

* per device: a bar chart of per-component latency per image (text encoder, UNet steps, VAE decode,
  the rest of the pipeline) for the latest run of every target;
* latency vs quality: every run that measured quality, with the Pareto front (faster *and* better)
  drawn through the variants nobody beats;
* the contact sheets the runs stored.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path

from .bench import figure_value, load_results

COMPONENT_COLORS = {"text encoder": "#8c6bb1", "UNet steps": "#2b8cbe", "VAE decode": "#41ab5d", "rest": "#bdbdbd"}


def expand_runs(results: list[tuple[Path, dict]]) -> list[tuple[Path, dict]]:
    """Every target run: a side-by-side result holds two (its ``vs`` run shares the time and the sheet)."""
    runs = []
    for path, doc in results:
        runs.append((path, doc))
        if doc.get("vs"):
            runs.append((path, {**doc, **doc["vs"], "vs": None, "ratios": None}))
    return runs


def _latest_per_target(results: list[tuple[Path, dict]]) -> dict[str, dict[str, tuple[Path, dict]]]:
    """device id -> target spec -> the latest (path, result)."""
    latest: dict[str, dict[str, tuple[Path, dict]]] = {}
    for path, doc in results:  # oldest first, so later runs replace earlier ones
        latest.setdefault(doc["fingerprint"]["id"], {})[doc["target"]["spec"]] = (path, doc)
    return latest


def component_split(doc: dict) -> dict[str, float]:
    f = doc["figures"]
    te, vae = figure_value(f, "text_encoder_s"), figure_value(f, "vae_decode_s")
    unet = figure_value(f, "unet_step_s") * f.get("unet_calls_per_image", doc["config"]["steps"])
    return {"text encoder": te, "UNet steps": unet, "VAE decode": vae,
            "rest": max(0.0, figure_value(f, "image_s") - te - unet - vae)}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both latency (lower) and quality (higher), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -float("inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _bar_chart(device: str, runs: dict[str, tuple[Path, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(runs)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.6 * len(specs)))
    left = [0.0] * len(specs)
    for comp, color in COMPONENT_COLORS.items():
        values = [component_split(runs[s][1])[comp] * 1000 for s in specs]
        ax.barh(specs, values, left=left, color=color, label=comp)
        left = [a + b for a, b in zip(left, values)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:,.1f} ms", va="center", fontsize=8)
    ax.set_xlabel("milliseconds per image (median)")
    ax.set_title(f"latency per component — {device}", fontsize=10)
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (1 + 0.5 * len(specs))), ncol=4, fontsize=8,
              frameon=False)
    ax.set_xlim(0, max(left) * 1.25 if left and max(left) > 0 else 1)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _scatter(results: list[tuple[Path, dict]], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(figure_value(d["figures"], "image_s") * 1000, d["quality"]["accuracy"]["joint"] * 100,
             d["target"]["spec"]) for _, d in results if d.get("quality")]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r[0] for r in rows], [r[1] for r in rows], color="#2b8cbe", zorder=3)
    front = pareto_front([(r[0], r[1]) for r in rows])
    ax.plot([rows[i][0] for i in front], [rows[i][1] for i in front], color="#e6550d", lw=1.5, zorder=2,
            label="Pareto front")
    for x, y, label in rows:
        ax.annotate(Path(label).name if ":" not in label else label.split(":")[0] + ":" + Path(label).name,
                    (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("milliseconds per image (median)")
    ax.set_ylabel("joint prompt accuracy (%)")
    ax.set_title("latency vs quality", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(history: Path, out: Path, *, overwrite: bool = False) -> Path:
    from ..atomic import atomic_output_dir

    results = expand_runs(load_results(history))
    latest = _latest_per_target(results)
    with atomic_output_dir(out, overwrite=overwrite, protect=(history,)) as tmp:
        body = [f"<h1>edgeldm bench report</h1><p>{len(results)} runs from <code>{html.escape(str(history))}</code>, "
                f"{len(latest)} device(s).</p>"]
        if _scatter(results, tmp / "latency-vs-quality.png"):
            body.append('<h2>Latency vs quality</h2><img src="latency-vs-quality.png" alt="latency vs quality">')
        for k, (device, runs) in enumerate(latest.items()):
            fp = next(iter(runs.values()))[1]["fingerprint"]
            chart = f"latency-{k}.png"
            _bar_chart(device, runs, tmp / chart)
            body.append(f"<h2>{html.escape(fp['cpu'])} · {fp['cores']} cores · {html.escape(fp['os'])} "
                        f"<small>({html.escape(device)})</small></h2><img src=\"{chart}\" alt=\"latency per component\">")
            body.append(_table(runs))
            for spec, (path, doc) in runs.items():
                sheet = doc.get("sheet")
                if sheet and (path.parent / sheet).is_file():
                    name = f"sheet-{k}-{len(body)}.png"
                    shutil.copyfile(path.parent / sheet, tmp / name)
                    body.append(f"<h3>{html.escape(spec)}</h3><img src=\"{name}\" alt=\"contact sheet\">")
        (tmp / "index.html").write_text(_PAGE.format(body="\n".join(body)), encoding="utf-8")
    return Path(out) / "index.html"


def _table(runs: dict[str, tuple[Path, dict]]) -> str:
    head = ("<table><tr><th>target</th><th>image</th><th>UNet step</th><th>text encoder</th><th>VAE decode</th>"
            "<th>cold load</th><th>peak memory</th><th>size</th><th>joint accuracy</th><th>when</th></tr>")
    rows = []
    for spec, (_, d) in runs.items():
        f = d["figures"]
        q = d.get("quality")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in (
            html.escape(spec), f"{figure_value(f, 'image_s') * 1000:,.1f} ms",
            f"{figure_value(f, 'unet_step_s') * 1000:,.2f} ms", f"{figure_value(f, 'text_encoder_s') * 1000:,.2f} ms",
            f"{figure_value(f, 'vae_decode_s') * 1000:,.2f} ms", f"{f['cold_load_s']:,.2f} s",
            f"{f['peak_rss_bytes'] / 2**20:,.0f} MiB", f"{f['size_bytes'] / 2**20:,.1f} MiB",
            f"{q['accuracy']['joint']:.1%}" if q else "–", html.escape(d["created"]))) + "</tr>")
    return head + "".join(rows) + "</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeldm bench report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}img{{max-width:100%;border:1px solid #ddd}}
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head>
<body>
{body}
</body></html>
"""

"""``quantize_bundle``: an exported bundle -> a quantized bundle for one backend, validated and stamped.

1. capture calibration inputs along the bundle's own sampler trajectory (or reuse a capture);
2. copy the bundle without other backends' graphs; quantize the scheme's components with the scheme;
3. validate each quantized graph against the fp32 one on held-out captured inputs (output PSNR) — below
   ``min_psnr`` (default: the scheme's, 52 dB for activation schemes) it is an error — nothing written unless
   ``keep_failed`` —, or, with ``sensitivity`` (default on for activation schemes), blocks are kept float
   until the floor is met;
4. write the manifest (files re-digested, per component the scheme and its parity numbers), then compare
   images of the two bundles on fixed prompts; the output folder appears only when all of it succeeded.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ...calibration.capture import CalibrationSet, CaptureConfig, capture
from ...errors import EdgeLDMError
from ...backends import BACKENDS, get_backend, load
from ...contract import generation_contract
from ...manifest import FORMAT_VERSION, check_bundle, digest_files, graph_file, load_manifest, \
    write_manifest
from .schemes import QuantOptions, component_schemes
from .validate import can_run, graph_parity, image_parity

logger = logging.getLogger("edgeldm")


class QuantizationQualityError(EdgeLDMError):
    """A quantized graph fell below the PSNR floor."""


@dataclass(frozen=True)
class QuantizeConfig:
    backend: str
    scheme: str  # one scheme, or per component: "text_encoder=int4-weights,unet=int8-weights"
    components: tuple[str, ...] | None = None  # None: the scheme's default
    options: QuantOptions = field(default_factory=QuantOptions)
    calibration: CaptureConfig = field(default_factory=CaptureConfig)
    calibration_dir: str | None = None  # reuse an existing capture
    # dB, every quantized component's output vs fp32 on held-out captured inputs; None: the scheme's floor
    # (Scheme.default_min_psnr: 52 for schemes that quantize activations, 45 for weight-only ones)
    min_psnr: float | None = None
    # keep blocks float until the floor is met, instead of failing; None: on for schemes that quantize activations
    sensitivity: bool | None = None
    keep_failed: bool = False  # below the floor: still write the bundle (marked failed), and raise after
    image_prompts: int = 4
    compact: bool = False  # onnx: slim the quantized graphs for shipping (exporters/onnx_compact.py)


def _other_backend_files(manifest: dict, backend: str) -> set[str]:
    skip = set()
    for name, comp in manifest["components"].items():
        for b, entry in comp["backends"].items():
            if b != backend:
                skip.update(entry["files"])
                if get_backend(b).graph_is_folder:  # the package folders themselves, not only their files
                    skip.update("/".join(f.split("/")[:2]) for f in entry["files"] if f.count("/") > 1)
    return skip


def _copy_for_backend(bundle: Path, dst: Path, manifest: dict, backend: str) -> None:
    skip = _other_backend_files(manifest, backend)

    def ignore(folder, names):
        rel = Path(folder).relative_to(bundle)
        return [n for n in names if str(rel / n) in skip or (str(rel) == "." and n in skip)]

    shutil.copytree(bundle, dst, ignore=ignore, dirs_exist_ok=True)


def _capture_backend(manifest: dict, backend: str) -> str:
    """A backend this machine can run to capture inputs (the trajectory is the same on any backend)."""
    have = set.intersection(*(set(c["backends"]) for c in manifest["components"].values()))
    for b in (backend, *BACKENDS):
        if b in have and can_run(b) is None:
            return b
    return "torch"  # the source model through the torch reference session


def quantize_bundle(bundle: str | Path, out: str | Path, config: QuantizeConfig, *, overwrite: bool = False,
                    verify: bool = True) -> dict:
    from ...atomic import atomic_output_dir
    from ...calibration.prompts import calibration_prompts
    from ...manifest import component_io
    from ...progress import progress_bar

    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    schemes = component_schemes(config.backend, config.scheme, config.components, present=manifest["components"])
    components = tuple(schemes)
    unknown = [c for c in components if c not in manifest["components"]]
    if unknown:
        raise EdgeLDMError(f"{bundle} has no component {', '.join(unknown)}",
                           hint=f"it has {', '.join(manifest['components'])}")
    lacking = [c for c in manifest["components"] if config.backend not in manifest["components"][c]["backends"]]
    if lacking:
        raise EdgeLDMError(f"{bundle} has no {config.backend} graph for {', '.join(lacking)}",
                           hint=f"export with --backend {config.backend} first")
    fused = [c for c, e in manifest["components"].items() if e["backends"].get(config.backend, {}).get("fusion")]
    if fused:  # the quantizers' patterns are the plain graph's; ONNX Runtime's contrib ops are not among them
        raise EdgeLDMError(f"{bundle}'s {config.backend} graphs of {', '.join(fused)} are fused for ONNX Runtime "
                           "(--onnx-fusion); the quantizers read plain graphs",
                           hint="quantize a bundle exported without --onnx-fusion")
    if manifest.get("quantization"):
        raise EdgeLDMError(f"{bundle} is already quantized ({manifest['quantization']['scheme']})",
                           hint="quantize the fp32 bundle it came from")
    if config.options.exclude and "unet" in schemes and not schemes["unet"].supports_exclude:
        raise EdgeLDMError(f"{config.backend} {config.scheme} cannot keep parts of a graph in float")
    if config.compact and config.backend != "onnx":
        raise EdgeLDMError(f"--compact is for ONNX graphs, not {config.backend}")
    runnable = can_run(config.backend)
    # the graphs, tokenizer and configs copied into the new bundle are the ones the manifest vouches for
    check_bundle(bundle, manifest, backends=[config.backend], verify=verify)

    with tempfile.TemporaryDirectory(prefix="edgeldm-calib-") as scratch, \
            atomic_output_dir(out, overwrite=overwrite, protect=(bundle,)) as tmp:
        if config.calibration_dir:
            calib = CalibrationSet(config.calibration_dir)
        else:
            calib_path = Path(scratch) / "calibration"
            capture(bundle, calib_path, config.calibration, backend=_capture_backend(manifest, config.backend),
                    verify=verify)
            calib = CalibrationSet(calib_path)
        _copy_for_backend(bundle, tmp, manifest, config.backend)
        new_manifest = json.loads(json.dumps(manifest))
        with progress_bar(total=len(components), desc=f"quantizing ({config.backend} {config.scheme})",
                          unit="graph") as bar:
            for comp, scheme in schemes.items():
                src = graph_file(bundle, manifest, comp, config.backend)
                io = component_io(manifest, comp)
                options = config.options if comp == "unet" else replace(config.options, exclude=())
                entry = _quantize_component(scheme, src, tmp / comp, comp, options, calib, io, config, runnable,
                                            scratch=Path(scratch))
                old = new_manifest["components"][comp]["backends"][config.backend]
                files = digest_files(tmp, entry.pop("files"))
                new_manifest["components"][comp]["backends"] = {config.backend: {
                    "files": files, "validation": old.get("validation"), "quantization": entry}
                    | ({"session_config": dict(scheme.session_config)} if scheme.session_config else {})
                    | ({"chunks": _parts_after(old["chunks"], tmp)} if old.get("chunks") else {})}
                new_manifest["components"][comp]["precision"] = scheme.name
                bar.update(1)
        failed = [f"{c}: {e['parity']['psnr_db']:.1f} dB < {e['min_psnr_db']:g} dB"
                  for c, e in ((c, new_manifest["components"][c]["backends"][config.backend]["quantization"])
                               for c in components) if e.get("passed") is False]
        for comp, c in new_manifest["components"].items():  # keep only this backend's graphs
            c["backends"] = {config.backend: c["backends"][config.backend]}
        distinct = {s.name: s for s in schemes.values()}
        new_manifest["quantization"] = {
            "backend": config.backend, "scheme": config.scheme,
            "summary": next(iter(distinct.values())).summary if len(distinct) == 1 else
            "; ".join(f"{c}: {s.summary}" for c, s in schemes.items()),
            "schemes": {c: s.name for c, s in schemes.items()},
            "components": list(components),
            "min_psnr_db": {c: _floor(config, s) for c, s in schemes.items()},
            "gate": {"passed": not failed, "failures": failed},
            "options": asdict(config.options),
            "calibration": {k: calib.index[k] for k in ("sampler", "steps", "guidance", "guidance_embedding")}
            | {"prompts": len(calib.index["prompts"]),
               "calls": {c: calib.calls(c) for c in calib.index["components"]}},
            "source_bundle": str(bundle.resolve()),
        }
        new_manifest["recipe"] = {"stage": "quantize", "options": {
            "backend": config.backend, "scheme": config.scheme, "components": list(components),
            "options": asdict(config.options), "calibration": asdict(config.calibration),
            "min_psnr": config.min_psnr, "sensitivity": config.sensitivity, "keep_failed": config.keep_failed,
            "compact": config.compact},
            "previous": manifest.get("recipe")}
        # a bundle of an older format comes out in the current one, its pipeline stated for this backend's graphs
        new_manifest["format_version"] = FORMAT_VERSION
        new_manifest.setdefault("family", "sd")  # bundles before format 4 hold SD 1.x / 2.x models only
        new_manifest["generation"] = generation_contract(new_manifest)
        write_manifest(tmp, new_manifest)
        if runnable is None and config.image_prompts:
            prompts = calibration_prompts(str(bundle), config.image_prompts, seed=97)
            parity = image_parity(config.backend, bundle, tmp, prompts)
            new_manifest["quantization"]["image_parity"] = parity
            logger.info("image PSNR vs fp32 bundle: mean %.1f dB, min %.1f dB", parity["psnr_db_mean"],
                        parity["psnr_db_min"])
        else:
            new_manifest["quantization"]["image_parity"] = {"skipped": runnable or "no prompts"}
        write_manifest(tmp, new_manifest)
    if failed:  # only with keep_failed: the bundle was written, marked failed, for inspection
        raise QuantizationQualityError(f"quantized bundle below the PSNR floor, kept in {out} as asked "
                                       f"(--keep-failed): " + "; ".join(failed),
                                       hint="lower --min-psnr to accept it, or pick a gentler scheme")
    return new_manifest


def _parts_after(chunks: list[dict], bundle: Path) -> list[dict]:
    """A graph in parts (Core ML chunks) is quantized part by part under the same names: the same chain, new sizes."""
    from ...benchmarks.targets import folder_bytes

    return [{**c, "bytes": folder_bytes(bundle / c["graph"])} for c in chunks]


def _floor(config: QuantizeConfig, scheme) -> float:
    return scheme.default_min_psnr if config.min_psnr is None else config.min_psnr


def _sensitivity(config: QuantizeConfig, scheme) -> bool:
    return scheme.calibrated if config.sensitivity is None else config.sensitivity


def _quantize_component(scheme, src: Path, dst: Path, comp: str, options: QuantOptions, calib, io,
                        config: QuantizeConfig, runnable: str | None, *, scratch: Path) -> dict:
    # clear this component's fp32 graph for the backend out of the copy; the scheme writes the new one
    backend = get_backend(config.backend)
    # the graph and its data files (an OpenVINO .bin, ONNX external data), or its package folder(s) (Core ML chunks)
    for f in list(dst.iterdir()):
        if f.is_file() and backend.owns_file(f.name):
            f.unlink()
        elif f.is_dir() and backend.owns_file(f.name + "/"):
            shutil.rmtree(f)
    files = scheme.quantize(src, dst, comp, options, calib)
    entry: dict = {"scheme": scheme.name, "exclude": list(options.exclude)}
    if runnable is not None:
        entry["parity"] = {"skipped": runnable}
    else:
        parity = graph_parity(config.backend, src, dst / backend.graph_in(dst), io, calib, comp,
                              session_config=dict(scheme.session_config))
        entry["parity"] = parity
        logger.info("%s %s: output PSNR %.1f dB vs fp32 (%d held-out inputs)", comp, scheme.name,
                    parity.get("psnr_db", float("nan")), parity.get("inputs", 0))
        floor = _floor(config, scheme)
        entry["min_psnr_db"] = floor
        if parity.get("inputs") and parity["psnr_db"] < floor:
            if _sensitivity(config, scheme) and scheme.supports_exclude:
                files, entry = _mixed_precision(scheme, src, dst, comp, options, calib, io, config, scratch)
                entry["min_psnr_db"] = floor
            if entry["parity"]["psnr_db"] < floor:
                entry["passed"] = False
                if not config.keep_failed:
                    kept = f" with {', '.join(entry['exclude'])} kept float" if entry["exclude"] else ""
                    raise QuantizationQualityError(
                        f"{comp} quantized with {config.backend} {scheme.name}{kept}: output PSNR "
                        f"{entry['parity']['psnr_db']:.1f} dB vs fp32 is below the floor {floor:g} dB; nothing "
                        "was written",
                        hint="lower --min-psnr to accept it (--keep-failed writes it for inspection), "
                             + ("" if _sensitivity(config, scheme) or not scheme.supports_exclude else
                                "add --sensitivity to keep the most sensitive blocks in float, ")
                             + "or pick a gentler scheme")
        if parity.get("inputs") and "passed" not in entry:
            entry["passed"] = True
    if config.compact:
        entry["compact"] = _compact(files[0], comp, calib, io, config, scheme, scratch)
    entry["files"] = files
    return entry


# compaction only renames and folds: its outputs must match the graph it started from to this PSNR
COMPACT_MIN_PSNR_DB = 80.0


def _compact(graph: Path, comp: str, calib, io, config: QuantizeConfig, scheme, scratch: Path) -> dict:
    """Compact the quantized graph in place and check it against itself before (held-out inputs)."""
    from ...exporters.onnx_compact import compact_onnx

    before = scratch / f"{comp}-before-compact.onnx"
    shutil.copyfile(graph, before)
    stats = compact_onnx(graph)
    if "skipped" in stats:
        before.unlink()
        return stats
    # both loaded as the runtime will (ORT folding the INT8 weights at load or not rounds differently)
    settings = dict(scheme.session_config)
    parity = graph_parity(config.backend, before, graph, io, calib, comp, session_config=settings,
                          reference_session_config=settings)
    before.unlink()
    if parity.get("inputs") and parity["psnr_db"] < COMPACT_MIN_PSNR_DB:
        raise EdgeLDMError(f"{comp}: the compacted graph's outputs moved (PSNR {parity['psnr_db']:.1f} dB vs the "
                           f"graph before, floor {COMPACT_MIN_PSNR_DB:g})", hint="quantize without --compact")
    return stats | {"parity": parity}


def _mixed_precision(scheme, src, dst, comp, options, calib, io, config, scratch):
    from .sensitivity import block_groups, search

    # each backend's schemes module reads its graph's node names (the sensitivity search excludes by name)
    groups = block_groups(load(get_backend(config.backend).schemes).node_names(src))
    trial = scratch / "sensitivity"

    def psnr_with(excluded: tuple[str, ...]) -> float:
        if trial.exists():
            shutil.rmtree(trial)
        files = scheme.quantize(src, trial, comp, replace(options, exclude=excluded), calib)
        return graph_parity(config.backend, src, files[0], io, calib, comp,
                            session_config=dict(scheme.session_config)).get("psnr_db", 0.0)

    floor = _floor(config, scheme)
    result = search(groups, psnr_with, floor)
    if not result.met and not config.keep_failed:
        raise QuantizationQualityError(
            f"{comp}: even with {', '.join(result.kept_float)} in float the output PSNR is "
            f"{result.steps[-1]['psnr_db']:.1f} dB < {floor:g} dB; nothing was written",
            hint="lower --min-psnr, or quantize fewer components (--components)")
    final = replace(options, exclude=tuple(result.kept_float))
    for f in list(dst.iterdir()):
        if f.name != "config.json":
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    files = scheme.quantize(src, dst, comp, final, calib)
    parity = graph_parity(config.backend, src, files[0], io, calib, comp, session_config=dict(scheme.session_config))
    return files, {"scheme": scheme.name, "exclude": list(final.exclude), "parity": parity,
                   "sensitivity": result.to_dict()}

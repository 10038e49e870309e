"""The bundle manifest ``edgeldm.json``: the contract between exporters, runtimes and app developers.

A mobile developer reads only this file to wire the graphs; the runtime reads only this file. It lists
per component and backend the files with their SHA-256, the declared I/O, precision, and the
validation numbers against torch; plus scheduler, default steps / guidance, image size, latent scaling
factor, the source checkpoint's digest, the recipe that produced the bundle and the toolchain versions.
Torch-free: the runtime verifies bundles with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import EdgeLDMError
from .io_spec import ComponentIO

MANIFEST_FILE = "edgeldm.json"
FORMAT = "edgeldm.bundle"
FORMAT_VERSION = 1


class BundleError(EdgeLDMError):
    """A bundle is missing, incomplete, altered, or lacks what was asked of it."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_files(root: Path, files: list[Path]) -> dict[str, str]:
    """{path relative to ``root``: SHA-256}"""
    return {str(f.relative_to(root)): sha256_file(f) for f in files}


def load_manifest(bundle: str | Path) -> dict:
    bundle = Path(bundle)
    path = bundle / MANIFEST_FILE
    if not bundle.is_dir():
        raise BundleError(f"bundle {bundle} does not exist or is not a folder")
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgeldm bundle: {MANIFEST_FILE} is missing",
                          hint="create one with `edgeldm export MODEL -o BUNDLE`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgeldm bundle manifest (format {manifest.get('format')!r})")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(f"{path} has format version {manifest['format_version']}; this edgeldm reads up to "
                          f"{FORMAT_VERSION}", hint="upgrade edgeldm")
    return manifest


def verify_files(bundle: Path, manifest: dict, *, backends: list[str] | None = None) -> None:
    """Check the tokenizer's files and every file of the given backends (all when None) against their SHA-256."""
    problems = []
    listed = [dict(manifest.get("tokenizer", {}).get("files", {}))]
    for comp in manifest["components"].values():
        listed += [entry["files"] for backend, entry in comp["backends"].items()
                   if backends is None or backend in backends]
    for files in listed:
        for rel, digest in files.items():
            path = bundle / rel
            if not path.is_file():
                problems.append(f"{rel} is missing")
            elif sha256_file(path) != digest:
                problems.append(f"{rel} was altered or truncated (SHA-256 differs from the manifest)")
    if problems:
        raise BundleError(f"bundle {bundle} failed verification:\n    " + "\n    ".join(problems),
                          hint="re-export the bundle; pass verify=False (--no-verify) only if you edited it on purpose")


def component_io(manifest: dict, component: str) -> ComponentIO:
    try:
        return ComponentIO.from_dict(component, manifest["components"][component]["io"])
    except KeyError:
        raise BundleError(f"the bundle has no {component!r} component") from None


def session_config(manifest: dict, component: str, backend: str) -> dict:
    """``{"session_config": {...}}`` when the component's graph for ``backend`` asks for session settings (a
    quantization scheme's, e.g. ONNX Runtime folding weight-only DequantizeLinear at load), else ``{}`` —
    keyword arguments for ``open_session``."""
    entry = manifest["components"].get(component, {}).get("backends", {}).get(backend, {})
    return {"session_config": dict(entry["session_config"])} if entry.get("session_config") else {}


def default_backend(manifest: dict) -> str:
    """The backend every component of a bundle has, onnx first: what a command runs unless told."""
    comps = manifest["components"].values()
    common = set.intersection(*(set(c["backends"]) for c in comps)) if comps else set()
    for backend in ("onnx", "openvino", "coreml"):
        if backend in common:
            return backend
    raise BundleError("no backend has a graph for every component of this bundle", hint="re-export the bundle")

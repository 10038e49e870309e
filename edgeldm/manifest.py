"""The bundle manifest ``edgeldm.json``: the contract between exporters, runtimes and app developers.

A mobile developer reads only this file to wire the graphs; the runtime reads only this file. It lists
per component and backend the files with their SHA-256, the declared I/O, precision, and the
validation numbers against torch; plus scheduler, default steps / guidance, image size, latent scaling
factor, the source checkpoint's digest, the recipe that produced the bundle and the toolchain versions.
Torch-free: the runtime verifies bundles with it.

The trust rule (docs/bundle-format.md): every file a loader opens — graphs and their external data, the
tokenizer's files, the component and scheduler configs — is listed with its SHA-256, every listed path stays
inside the bundle (no absolute paths, no ``..``, no symlink leading out), and loaders open files only through
:func:`bundle_file` on a listed entry. A component or tokenizer without its files listed fails verification.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePosixPath, PureWindowsPath

from .backends import BACKENDS, owners
from .errors import EdgeLDMError
from .families import FAMILIES
from .io_spec import ComponentIO

MANIFEST_FILE = "edgeldm.json"
FORMAT = "edgeldm.bundle"
#: 2: the configs peer loaders open are listed under "files"; every path must stay inside the bundle
#: 3: "generation" states the pipeline around the graphs (docs/bundle-format.md); portable Philox noise
#: 4: the model "family"; "generation.text.encoders" lists every text encoder (SDXL's two, with "tokenizer_2") and
#:    "generation.text.added_conditions" the UNet's pooled text embedding and micro-conditioning (SDXL)
FORMAT_VERSION = 4
logger = logging.getLogger("edgeldm")


class BundleError(EdgeLDMError):
    """A bundle is missing, incomplete, altered, or lacks what was asked of it."""


def _shape_problems(m) -> list[str]:
    """The manifest's structure, before anything reads it (a hand-edited or hostile file)."""
    if not isinstance(m, dict):
        return ["not a JSON object"]
    problems = []
    if not isinstance(m.get("format_version", 0), int):
        problems.append("format_version is not an integer")
    comps = m.get("components")
    if not isinstance(comps, dict) or not all(isinstance(c, dict) and isinstance(c.get("backends", {}), dict)
                                              for c in comps.values()):
        problems.append("components is not a map of components with backends")
    else:
        for c in comps.values():
            for e in c.get("backends", {}).values():
                if not isinstance(e, dict) or not isinstance(e.get("files", {}), dict):
                    problems.append("a backend entry has no files map")
    tok = m.get("tokenizer")
    if not isinstance(tok, dict) or not isinstance(tok.get("folder"), str) or \
            not isinstance(tok.get("files", {}), dict):
        problems.append("tokenizer is not a map with a folder and files")
    if not isinstance(m.get("files", {}), dict):
        problems.append("files is not a map")
    for key in ("image", "scheduler", "defaults"):
        if not isinstance(m.get(key), dict):
            problems.append(f"{key} is missing")
    return sorted(set(problems))


SCHEMA_FILE = Path(__file__).parent / "schemas" / "edgeldm.bundle.v4.schema.json"


def manifest_schema() -> dict:
    """The JSON Schema of the current format (shipped in the package: ``edgeldm/schemas``)."""
    return json.loads(SCHEMA_FILE.read_text())


def validate_manifest(manifest: dict) -> None:
    """Raise :class:`BundleError` listing every way ``manifest`` breaks the shipped JSON Schema."""
    try:
        import jsonschema
    except ImportError:
        raise EdgeLDMError("validating a manifest needs jsonschema", hint="pip install 'edgeldm[compress]'") from None
    validator = jsonschema.Draft202012Validator(manifest_schema())
    problems = sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
                      for e in validator.iter_errors(manifest))
    if problems:
        raise BundleError("the manifest breaks the bundle schema:\n  " + "\n  ".join(problems[:20]) +
                          (f"\n  ... {len(problems) - 20} more" if len(problems) > 20 else ""),
                          hint="this is a bug in the writer: please report it with the manifest")


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``folder/edgeldm.json`` after checking it against the schema: no writer ships a bundle its readers
    could not follow. ``folder`` is a writer's temporary folder (the bundle appears atomically around it)."""
    text = json.dumps(manifest, indent=2, default=_json_default) + "\n"
    validate_manifest(json.loads(text))  # what readers will see, after JSON's own conversions
    (Path(folder) / MANIFEST_FILE).write_text(text)


def _json_default(obj):
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_files(root: Path, files: list[Path]) -> dict[str, str]:
    """{path relative to ``root``, with '/' on every OS: SHA-256}"""
    return {f.relative_to(root).as_posix(): sha256_file(f) for f in files}


def bundle_file(bundle: str | Path, rel: str) -> Path:
    """The path of the manifest entry ``rel`` inside ``bundle``.

    Refuses what could make a loader read outside the bundle: an absolute path, ``..``, a backslash, or a
    symlink (at any level) that resolves outside the bundle's folder.
    """
    bundle = Path(bundle)
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise BundleError(f"manifest entry {rel!r} is not a relative path with '/' separators")
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or ".." in parts:
        raise BundleError(f"manifest entry {rel!r} points outside the bundle {bundle}",
                          hint="a bundle lists only paths inside its own folder; re-export it")
    path = bundle.joinpath(*parts)
    root, real = bundle.resolve(), path.resolve()
    if real != root and root not in real.parents:
        raise BundleError(f"{rel} in bundle {bundle} is a symlink (or lies under one) that leads outside the "
                          f"bundle, to {real}", hint="copy the file into the bundle instead of linking it")
    return path


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
    problems = _shape_problems(manifest)
    if problems:
        raise BundleError(f"{path} is not a valid manifest: {'; '.join(problems)}", hint="re-export the bundle")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(f"{path} has format version {manifest['format_version']}; this edgeldm reads up to "
                          f"{FORMAT_VERSION}", hint="upgrade edgeldm")
    return manifest


def _listed_files(manifest: dict, backends: list[str] | None) -> tuple[dict[str, str], list[str]]:
    """Every listed path -> digest that a loader of ``backends`` (all when None) may open, and what is missing
    from the listing (a component without its graph, a tokenizer without its files, a config unlisted)."""
    listed: dict[str, str] = {}
    missing: list[str] = []
    shared = manifest.get("files")
    if not isinstance(shared, dict):
        missing.append("the configs (model_index.json, scheduler and component configs: no top-level \"files\")")
        shared = {}
    listed.update(shared)
    folder = (manifest.get("tokenizer") or {}).get("folder")
    tok_files = _tokenizer_files(manifest)
    if not tok_files:
        missing.append("the tokenizer's files")
    elif folder is None or f"{folder}/tokenizer.json" not in tok_files:
        missing.append(f"the tokenizer's tokenizer.json (in {folder!r})")
    listed.update(tok_files)
    components = manifest.get("components") or {}
    if not components:
        missing.append("every component (the manifest lists none)")
    for name, comp in components.items():
        for backend, entry in (comp.get("backends") or {}).items():
            if backends is not None and backend not in backends:
                continue
            files = entry.get("files") or {}
            if listed_graph(files, name, backend) is None:
                missing.append(f"{name}'s {backend} graph {name}/{graph_name(backend)}")
            listed.update(files)
        if f"{name}/config.json" not in shared and shared:
            missing.append(f"{name}/config.json")
    return listed, missing


def verify_files(bundle: Path, manifest: dict, *, backends: list[str] | None = None) -> None:
    """Check every file a loader of ``backends`` (all when None) opens against its SHA-256 — graphs and their
    data, tokenizer, configs — and that nothing else sits unlisted beside the graphs; all problems at once."""
    bundle = Path(bundle)
    listed, missing = _listed_files(manifest, backends)
    problems = [f"not listed in {MANIFEST_FILE}: {m}" for m in missing]
    for rel, digest in listed.items():
        try:
            path = bundle_file(bundle, rel)
        except BundleError as exc:
            problems.append(exc.message)
            continue
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel} was altered or truncated (SHA-256 differs from the manifest)")
    # a file beside a graph could be opened by it (external data, an OpenVINO .bin): every file in a component
    # folder belongs, by its name, to one backend's graph and must be listed under that very backend
    components = manifest.get("components") or {}
    by_backend = {(c, b): set(e.get("files") or {}) for c, comp in components.items()
                  for b, e in (comp.get("backends") or {}).items()}
    for (c, b), files in by_backend.items():
        if backends is not None and b not in backends:
            continue
        for rel in sorted(files):
            if b not in owners(c, rel):
                problems.append(f"{rel} is listed under {c}'s {b} graph but is not one of its files")
    shared = set(manifest.get("files") or {}) | set(_tokenizer_files(manifest))
    folders = {rel.split("/")[0] for rel in listed if "/" in rel and not rel.startswith(("./", "/"))}
    for folder in sorted(folders):
        root = bundle / folder
        if not root.is_dir():
            continue
        for f in sorted(root.rglob("*")):
            if not (f.is_file() or f.is_symlink()) or _os_metadata(f.name):
                continue
            rel = f.relative_to(bundle).as_posix()
            mine = owners(folder, rel)
            if rel in shared or any(rel in by_backend.get((folder, o), ()) for o in mine):
                continue
            problems.append(f"{rel} is in the bundle but not in its manifest" if not mine or
                            not any(rel in fs for fs in by_backend.values()) else
                            f"{rel} belongs to {folder}'s {' / '.join(sorted(mine))} graph but is listed elsewhere")
    if problems:
        raise BundleError(f"bundle {bundle} failed verification:\n    " + "\n    ".join(problems),
                          hint="re-export the bundle; pass verify=False (--no-verify) only if you edited it on purpose")


#: what file managers leave in folders they show (Finder, Explorer): no graph of ours opens these names, and a
#: bundle copied through a Mac must still verify
OS_METADATA = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})


def _os_metadata(name: str) -> bool:
    return name in OS_METADATA or name.startswith("._")  # ._*: macOS's AppleDouble resource forks


def graph_name(backend: str) -> str:
    """The graph file a component folder holds for ``backend`` (the runtime and peer loaders open this name);
    an unknown backend or one without graphs names nothing, which no listing contains."""
    b = BACKENDS.get(backend)
    return (b.graph_file if b is not None else None) or f"<no {backend} graph>"


#: the tokenizer entries a manifest may hold: every family's (SDXL's second since format 4)
TOKENIZERS = tuple(dict.fromkeys(t for f in FAMILIES.values() for t in f.tokenizers))


def _tokenizer_files(manifest: dict) -> dict:
    return {rel: digest for key in TOKENIZERS for rel, digest in ((manifest.get(key) or {}).get("files") or {}).items()}


NO_VERIFY_WARNING = ("--no-verify: the bundle's files are not checked against the SHA-256 digests of its manifest; "
                     "an altered or truncated graph, tokenizer or config would be used as it is (paths must still "
                     "stay inside the bundle)")


def check_bundle(bundle: str | Path, manifest: dict, *, backends: list[str] | None, verify: bool) -> None:
    """``verify_files``, or — with ``verify=False`` — one warning that says what that skips."""
    if verify:
        verify_files(Path(bundle), manifest, backends=backends)
        return
    logger.warning("%s (%s)", NO_VERIFY_WARNING, bundle)
    listed, _ = _listed_files(manifest, backends)
    for rel in listed:  # digests skipped, the path rule never: nothing is read from outside the bundle
        bundle_file(bundle, rel)


def graph_file(bundle: str | Path, manifest: dict, component: str, backend: str) -> Path:
    """The graph of ``component`` for ``backend``, opened only if the manifest lists it (through
    :func:`bundle_file`, so inside the bundle)."""
    try:
        files = manifest["components"][component]["backends"][backend].get("files") or {}
    except KeyError:
        raise BundleError(f"the bundle has no {backend} graph for {component!r}") from None
    rel = listed_graph(files, component, backend)
    if rel is None:
        raise BundleError(f"{component}/{graph_name(backend)} is not listed in the bundle's manifest",
                          hint="re-export the bundle")
    return bundle_file(bundle, rel)


def listed_graph(files: dict, component: str, backend: str) -> str | None:
    """The path a component's graph for ``backend`` opens from, if ``files`` lists it: the graph file (a package
    is a folder: listed by its files), or the first part of a graph in parts (Core ML chunks), else None."""
    names = [graph_name(backend)] + [p for p in [getattr(BACKENDS.get(backend), "first_part", None)] if p]
    for name in names:
        rel = f"{component}/{name}"
        if rel in files or any(f.startswith(rel + "/") for f in files):
            return rel
    return None


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
    """The backend every component of a bundle has, first in the registry's order (onnx first): what a
    command runs unless told."""
    comps = manifest["components"].values()
    common = set.intersection(*(set(c["backends"]) for c in comps)) if comps else set()
    for backend in BACKENDS:
        if backend in common:
            return backend
    raise BundleError("no backend has a graph for every component of this bundle", hint="re-export the bundle")

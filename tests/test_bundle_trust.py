"""The bundle trust rule: a bundle that verifies is the bundle that runs.

Every file a loader opens (graphs and their data, tokenizer, configs) is listed with its digest and opened
through the listed entry; paths outside the bundle, symlinks leading out, unlisted files beside the graphs and
missing listings are refused — by the runtime, the quantizer, bench and the CLI, with nothing written.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from edgeldm.cli import main
from edgeldm.manifest import MANIFEST_FILE, BundleError, NO_VERIFY_WARNING, bundle_file, load_manifest, verify_files
from edgeldm.runtimes.text2image import Text2Image

PROMPT = "a small red circle in the top left on a white background"


@pytest.fixture
def bundle(tiny_random_bundle, tmp_path) -> Path:
    """A private copy of the tiny-random bundle a test may tamper with."""
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_random_bundle, dst)
    return dst


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _refused_by_cli(bundle: Path, tmp_path: Path, capsys, match: str, *extra: str) -> str:
    out = tmp_path / "x.png"
    assert main(["run", str(bundle), "--prompt", PROMPT, "--steps", "2", "-o", str(out), *extra]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and match in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".x.png")]
    return err


def test_the_untouched_bundle_verifies_every_file_a_loader_opens(tiny_random_bundle):
    manifest = load_manifest(tiny_random_bundle)
    verify_files(tiny_random_bundle, manifest)
    assert {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json"} <= set(manifest["files"])
    assert "tokenizer/tokenizer.json" in manifest["tokenizer"]["files"]


def test_emptied_files_maps_fail_verification_instead_of_passing(bundle, tmp_path, capsys):
    def empty(m):
        for comp in m["components"].values():
            for entry in comp["backends"].values():
                entry["files"] = {}
        m["tokenizer"]["files"] = {}

    _edit_manifest(bundle, empty)
    (bundle / "unet" / "model.onnx").write_bytes(b"an altered graph")
    with pytest.raises(BundleError) as info:
        Text2Image(bundle, backend="onnx")
    message = str(info.value)
    assert "unet's onnx graph unet/model.onnx" in message and "the tokenizer's files" in message
    _refused_by_cli(bundle, tmp_path, capsys, "not listed in edgeldm.json")


@pytest.mark.parametrize("outside", ["../../elsewhere/model.onnx", "/tmp/elsewhere/model.onnx", "unet/../../x.onnx",
                                     "C:\\elsewhere\\model.onnx", "unet\\..\\..\\model.onnx", ""])
def test_a_files_entry_outside_the_bundle_is_refused(bundle, tmp_path, capsys, outside):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(bundle / "unet" / "model.onnx", elsewhere / "model.onnx")  # the good graph, hashed outside

    def point_out(m):
        files = m["components"]["unet"]["backends"]["onnx"]["files"]
        files[outside] = files["unet/model.onnx"]

    _edit_manifest(bundle, point_out)
    with pytest.raises(BundleError, match="outside the bundle|not a relative path"):
        verify_files(bundle, load_manifest(bundle))
    with pytest.raises(BundleError):
        bundle_file(bundle, outside)
    _refused_by_cli(bundle, tmp_path, capsys, "failed verification")


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_a_tokenizer_folder_outside_the_bundle_is_refused(bundle, tmp_path, capsys, kind):
    # the attack of the issue: a tokenizer with two colour words' ids swapped, outside the bundle
    evil = tmp_path / "evil-tokenizer"
    shutil.copytree(bundle / "tokenizer", evil)
    vocab = json.loads((evil / "vocab.json").read_text())
    vocab["red</w>"], vocab["blue</w>"] = vocab["blue</w>"], vocab["red</w>"]
    (evil / "vocab.json").write_text(json.dumps(vocab))
    folder = str(evil) if kind == "absolute" else "../evil-tokenizer"

    def redirect(m):
        m["tokenizer"]["folder"] = folder
        m["tokenizer"]["files"] = {f"{folder}/{p.name}": digest for p, digest in
                                   ((evil / Path(rel).name, d) for rel, d in m["tokenizer"]["files"].items())}

    _edit_manifest(bundle, redirect)
    with pytest.raises(BundleError, match="outside the bundle"):
        Text2Image(bundle, backend="onnx")
    with pytest.raises(BundleError, match="outside the bundle"):  # --no-verify skips digests, not the paths
        Text2Image(bundle, backend="onnx", verify=False)
    _refused_by_cli(bundle, tmp_path, capsys, "outside the bundle")


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_symlink_leading_out_of_the_bundle_is_refused(bundle, tmp_path, capsys, what):
    outside = tmp_path / "outside"
    if what == "file":
        outside.mkdir()
        shutil.copyfile(bundle / "unet" / "model.onnx", outside / "model.onnx")
        (bundle / "unet" / "model.onnx").unlink()
        (bundle / "unet" / "model.onnx").symlink_to(outside / "model.onnx")  # same bytes: the digest matches
    else:
        shutil.move(bundle / "tokenizer", outside)
        (bundle / "tokenizer").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BundleError, match="leads outside the bundle"):
        verify_files(bundle, load_manifest(bundle))
    _refused_by_cli(bundle, tmp_path, capsys, "leads outside the bundle")


def test_a_symlink_inside_the_bundle_is_followed(bundle):
    (bundle / "unet" / "model.onnx").rename(bundle / "unet-graph.onnx")
    (bundle / "unet" / "model.onnx").symlink_to(bundle / "unet-graph.onnx")
    verify_files(bundle, load_manifest(bundle), backends=["onnx"])


@pytest.mark.parametrize("rel", ["unet/config.json", "scheduler/scheduler_config.json", "model_index.json",
                                 "tokenizer/vocab.json", "vae_decoder/openvino_model.bin"])
def test_an_altered_config_tokenizer_or_graph_file_fails(bundle, rel):
    path = bundle / rel
    path.write_bytes(path.read_bytes()[:-2] + b" \n")
    with pytest.raises(BundleError, match=f"{rel} was altered"):
        verify_files(bundle, load_manifest(bundle))


def test_an_unlisted_file_beside_a_graph_fails(bundle):
    # ONNX Runtime would read external data of that name beside the graph, unverified
    (bundle / "unet" / "model.onnx_data").write_bytes(b"\0" * 64)
    with pytest.raises(BundleError, match="unet/model.onnx_data is in the bundle but not in its manifest"):
        Text2Image(bundle, backend="onnx")


def test_a_bundle_copied_through_a_file_manager_still_verifies(bundle):
    """Finder's .DS_Store and AppleDouble ._* files, Explorer's Thumbs.db: no graph opens those names."""
    for rel in ("unet/.DS_Store", "unet/._model.onnx", "vae_decoder/Thumbs.db", "text_encoder/desktop.ini"):
        (bundle / rel).write_bytes(b"\0\1metadata")
    verify_files(bundle, load_manifest(bundle))
    (bundle / "unet" / "DS_Store.onnx_data").write_bytes(b"\0")  # a look-alike is still an unlisted file
    with pytest.raises(BundleError, match="unet/DS_Store.onnx_data is in the bundle but not in its manifest"):
        verify_files(bundle, load_manifest(bundle))


def test_a_format_1_bundle_without_listed_configs_needs_no_verify(bundle, tmp_path):
    def downgrade(m):
        m["format_version"] = 1
        del m["files"]
        del m["image"]["size_multiple"]

    _edit_manifest(bundle, downgrade)
    with pytest.raises(BundleError, match="no top-level"):
        Text2Image(bundle, backend="onnx")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("edgeldm").addHandler(handler)  # the CLI's configuration stops propagation to caplog
    try:
        t2i = Text2Image(bundle, backend="onnx", verify=False)
    finally:
        logging.getLogger("edgeldm").removeHandler(handler)
    warnings = [r.getMessage() for r in records if NO_VERIFY_WARNING in r.getMessage()]
    assert len(warnings) == 1  # said once, with what it skips
    assert t2i.size_multiple == 4  # read from the UNet's config when the manifest does not state it
    assert t2i(PROMPT, steps=2).size == (64, 64)


def test_quantize_and_bench_refuse_a_tampered_bundle_before_any_work(bundle, tmp_path, capsys):
    from edgeldm.benchmarks.targets import BenchConfig, make_target

    (bundle / "unet" / "model.onnx").write_bytes(b"not the exported graph")
    out = tmp_path / "q"
    assert main(["quantize", str(bundle), "-o", str(out), "--backend", "onnx", "--scheme", "dynamic"]) == 1
    assert "unet/model.onnx was altered" in capsys.readouterr().err and not out.exists()
    for kind in ("", "optimum-ort:"):
        target = make_target(f"{kind}{bundle}", BenchConfig(backend="onnx"))
        with pytest.raises(BundleError, match="unet/model.onnx was altered"):
            target.load()


@pytest.mark.parametrize("command", ["run", "eval", "bench", "quantize"])
def test_every_command_that_loads_bundles_has_no_verify(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--no-verify" in capsys.readouterr().out


def test_a_graph_file_listed_under_another_backend_is_refused(bundle, tmp_path, capsys):
    # the review's bypass: the OpenVINO weights moved to the onnx listing, then altered, while loading OpenVINO
    def move(m):
        b = m["components"]["unet"]["backends"]
        b["onnx"]["files"]["unet/openvino_model.bin"] = b["openvino"]["files"].pop("unet/openvino_model.bin")

    _edit_manifest(bundle, move)
    with pytest.raises(BundleError, match="openvino_model.bin belongs to unet's openvino graph but is listed"):
        Text2Image(bundle, backend="openvino")
    with pytest.raises(BundleError, match="is listed under unet's onnx graph but is not one of its files"):
        Text2Image(bundle, backend="onnx")


def test_a_symlinked_component_folder_is_scanned_like_a_real_one(bundle):
    (bundle / "unet").rename(bundle / ".unet-real")
    (bundle / "unet").symlink_to(bundle / ".unet-real", target_is_directory=True)
    _edit_manifest(bundle, lambda m: m["components"]["unet"]["backends"]["openvino"]["files"].pop(
        "unet/openvino_model.bin"))
    with pytest.raises(BundleError, match="unet/openvino_model.bin is in the bundle but not in its manifest|"
                                          "belongs to unet's openvino graph"):
        Text2Image(bundle, backend="openvino")


def test_no_verify_still_keeps_every_listed_file_inside(bundle, tmp_path):
    outside = tmp_path / "outside.bin"
    (bundle / "unet" / "openvino_model.bin").rename(outside)
    (bundle / "unet" / "openvino_model.bin").symlink_to(outside)
    with pytest.raises(BundleError, match="leads outside the bundle"):
        Text2Image(bundle, backend="openvino", verify=False)


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m.update(format_version="2"), "format_version is not an integer"),
    (lambda m: m.update(components=[]), "components is not a map"),
    (lambda m: m.update(tokenizer="tokenizer"), "tokenizer is not a map"),
    (lambda m: m["tokenizer"].pop("folder"), "tokenizer is not a map with a folder"),
])
def test_a_malformed_manifest_is_a_bundle_error(bundle, edit, needle):
    _edit_manifest(bundle, edit)
    with pytest.raises(BundleError, match=needle):
        Text2Image(bundle, backend="onnx", verify=False)


def test_run_never_writes_into_its_bundle(bundle, capsys):
    assert main(["run", str(bundle), "--prompt", PROMPT, "-o", str(bundle / "unet" / "x.png")]) == 1
    assert "never writes into its input" in capsys.readouterr().err
    verify_files(bundle, load_manifest(bundle))

"""CLI conventions and atomic outputs."""

import errno
import subprocess
import sys

import pytest

from edgeldm.atomic import atomic_output_dir
from edgeldm.cli import main
from edgeldm.commands import load_commands

SUBCOMMANDS = load_commands()
from edgeldm.errors import EdgeLDMError, OutputExistsError

from conftest import tree_digest


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(command):
    words = command.split("-", 1) if command.startswith("bench-") else [command]  # `edgeldm bench compare`
    proc = subprocess.run([sys.executable, "-m", "edgeldm", *words, "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"usage: edgeldm {' '.join(words)}")


def test_top_level_help_lists_subcommands():
    proc = subprocess.run([sys.executable, "-m", "edgeldm", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in SUBCOMMANDS:
        assert command in proc.stdout
    assert "--verbose" in proc.stdout and "--quiet" in proc.stdout


def test_zoo_save_writes_a_loadable_folder_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "tr"
    assert main(["--quiet", "zoo", "save", "tiny-random", "-o", str(out)]) == 0
    assert (out / "model_index.json").is_file() and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    digest = tree_digest(out)
    assert main(["zoo", "save", "tiny-random", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert tree_digest(out) == digest
    assert main(["--quiet", "zoo", "save", "tiny-random", "-o", str(out), "--overwrite", "--seed", "3"]) == 0
    assert tree_digest(out) != digest  # other seed, other weights: really replaced


def test_atomic_output_keeps_the_previous_output_on_failure(tmp_path):
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(dest, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("stage crashed")
    assert (dest / "old.txt").read_text() == "old" and not (dest / "new.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_atomic_output_reports_a_full_disk_and_leaves_nothing(tmp_path):
    dest = tmp_path / "bundle"
    with pytest.raises(EdgeLDMError, match="disk filled up"):
        with atomic_output_dir(dest) as tmp:
            (tmp / "part.bin").write_bytes(b"x" * 10)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_refuses_existing_and_input_paths(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputExistsError):
        with atomic_output_dir(tmp_path / "exists"):
            pass
    with pytest.raises(EdgeLDMError, match="never writes into its input"):
        with atomic_output_dir(tmp_path / "model" / "out", protect=(tmp_path / "model",)):
            pass

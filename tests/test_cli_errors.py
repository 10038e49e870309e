"""No input ends in a traceback: every case of the hardening issue gives a one-line error (or works), exits
non-zero where it fails, and writes and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeldm.cli import main

from conftest import UNWRITABLE, run_on_tmpfs, tree_digest

PROMPT = "a small red circle in the top left on a white background"


def _fails(argv: list[str], capsys, code: int, *needles: str) -> str:
    """``edgeldm ARGV`` exits ``code`` with a short message naming each needle, and no traceback."""
    if code == 2:  # argparse's own exit for a value refused while parsing
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    else:
        assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _nothing_new(folder: Path, before: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == before, "a failed command left something behind"


# --- values refused where they are parsed ------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, needle", [
    ("--guidance", "nan", "finite number >= 0"), ("--guidance", "inf", "finite number >= 0"),
    ("--guidance", "-1", "finite number >= 0"), ("--guidance", "lots", "must be a number"),
    ("--seed", "-1", "[0, 2^64 - 1]"), ("--seed", str(2**64), "[0, 2^64 - 1]"), ("--seed", "1.5", "whole number"),
    ("--sampler", "foo", "invalid choice: 'foo'"), ("--backend", "tensorrt", "invalid choice: 'tensorrt'"),
])
def test_run_refuses_bad_values_while_parsing(tiny_random_bundle, tmp_path, capsys, flag, value, needle):
    out = tmp_path / "x.png"
    _fails(["run", str(tiny_random_bundle), "--prompt", PROMPT, "-o", str(out), flag, value], capsys, 2, needle)
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    ["generate", "tiny-random", "--prompt", "p", "-o", "{out}/x.png", "--guidance", "nan"],
    ["eval", "tiny-random", "--guidance", "-2"],
    ["bench", "tiny-random", "--guidance", "inf"],
    ["bench", "tiny-random", "--vs", "tiny-random", "--vs-guidance", "nan"],
    ["prune", "tiny-random", "-o", "{out}/p", "--guidance", "nan"],
    ["finetune", "a", "--teacher", "b", "-o", "{out}/f", "--guided-kd-scale", "-1"],
    ["generate", "tiny-random", "--prompt", "p", "-o", "{out}/x.png", "--seed", "-1"],
    ["zoo", "save", "tiny-random", "-o", "{out}/z", "--seed", "-3"],
    ["distill", "tiny-random", "-o", "{out}/d", "--seed", "-1"],
])
def test_every_command_shares_the_guidance_and_seed_rules(tmp_path, capsys, argv):
    _fails([a.format(out=tmp_path) for a in argv], capsys, 2, "argument --")
    assert list(tmp_path.iterdir()) == []


def test_a_prompt_that_is_not_utf8_is_refused(tiny_random_bundle, tmp_path, capsys):
    not_utf8 = os.fsdecode(b"a red \xff circle")  # what Python makes of such command-line bytes
    for command in (["run", str(tiny_random_bundle)], ["generate", "tiny-random"]):
        _fails([*command, "--prompt", not_utf8, "-o", str(tmp_path / "x.png")], capsys, 2, "not valid UTF-8")
        _fails([*command, "--prompt", "ok", "--negative-prompt", not_utf8, "-o", str(tmp_path / "x.png")], capsys,
               2, "not valid UTF-8")
    assert list(tmp_path.iterdir()) == []
    # through the library too, with the same rule
    from edgeldm.errors import EdgeLDMError
    from edgeldm.runtimes.text2image import Text2Image

    with pytest.raises(EdgeLDMError, match="not valid UTF-8"):
        Text2Image(tiny_random_bundle).latents(not_utf8, steps=1)


def test_a_size_the_unet_cannot_take_names_the_multiple(tiny_bundle, tmp_path, capsys):
    # tiny: VAE factor 8 x two downsamplings = 32; 72 is a multiple of 8, which run used to accept
    out = tmp_path / "x.png"
    _fails(["run", str(tiny_bundle), "--prompt", PROMPT, "--height", "72", "-o", str(out)], capsys, 1,
           "multiples of 32", "VAE factor 8")
    _fails(["generate", "tiny", "--prompt", PROMPT, "--width", "72", "-o", str(out)], capsys, 1, "multiples of 32")
    assert not out.exists()


@pytest.mark.parametrize("steps, needle", [("100000", "num_train_timesteps=1000"), ("1001", "choose fewer steps")])
def test_too_many_steps_is_a_clear_error(tiny_random_bundle, tmp_path, capsys, steps, needle):
    out = tmp_path / "x.png"
    _fails(["run", str(tiny_random_bundle), "--prompt", PROMPT, "--steps", steps, "-o", str(out)], capsys, 1, needle)
    _fails(["generate", "tiny-random", "--prompt", PROMPT, "--steps", steps, "-o", str(out)], capsys, 1,
           "takes at most 1000")
    assert not out.exists()


def test_guidance_zero_and_one_both_mean_no_guidance(tiny_random_bundle):
    from edgeldm.runtimes.text2image import Text2Image

    t2i = Text2Image(tiny_random_bundle)
    assert (t2i.latents(PROMPT, steps=2, guidance=0.0) == t2i.latents(PROMPT, steps=2, guidance=1.0)).all()


def test_latents_that_overflow_are_an_error_not_a_black_image(tiny_random_bundle):
    from edgeldm.errors import EdgeLDMError
    from edgeldm.runtimes.text2image import Text2Image

    with pytest.raises(EdgeLDMError, match="overflowed"):
        Text2Image(tiny_random_bundle).latents(PROMPT, steps=2, guidance=1e38)


# --- outputs that cannot be written fail before the work ---------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["run", "{bundle}", "--prompt", "p", "-o", "{bad}/x.png"],
    ["generate", "tiny-random", "--prompt", "p", "-o", "{bad}/x.png"],
    ["export", "tiny-random", "-o", "{bad}/b"],
    ["zoo", "save", "tiny-random", "-o", "{bad}/z"],
    ["prune", "tiny-random", "-o", "{bad}/p"],
    ["finetune", "tiny-random", "--teacher", "tiny-random", "-o", "{bad}/f"],
    ["distill", "tiny-random", "-o", "{bad}/d"],
    ["distill-vae", "tiny-random", "-o", "{bad}/v"],
    ["quantize", "{bundle}", "-o", "{bad}/q", "--backend", "onnx", "--scheme", "dynamic"],
    ["eval", "{bundle}", "--sheet", "{bad}/s.png"],
    ["bench", "{bundle}", "--json", "{bad}/r.json"],
    ["bench", "{bundle}", "--sheet", "{bad}/s.png"],
    ["bench", "{bundle}", "--history", "{bad}/h"],
    ["bench", "report", "{bundle}", "-o", "{bad}/r"],
])
def test_an_unwritable_output_fails_at_once(tiny_random_bundle, capsys, argv, monkeypatch):
    import edgeldm.benchmarks.bench as bench
    import edgeldm.loading as loading

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(loading, "load_pipeline", no_work)
    monkeypatch.setattr(bench, "run_bench", no_work)
    argv = [a.format(bundle=tiny_random_bundle, bad=UNWRITABLE) for a in argv]
    _fails(argv, capsys, 1, "cannot write", str(UNWRITABLE))


def test_a_read_only_folder_is_refused_by_run_export_and_zoo_save(tiny_random_bundle, tmp_path):
    for k, argv in enumerate([["run", str(tiny_random_bundle), "--prompt", "p", "-o", "{mnt}/x.png"],
                              ["export", "tiny-random", "-o", "{mnt}/b"],
                              ["zoo", "save", "tiny-random", "-o", "{mnt}/z"]]):
        work = tmp_path / str(k)
        work.mkdir()
        rc, err, left = run_on_tmpfs(work, "ro,size=1m", [a.format(mnt=work / "mnt") for a in argv])
        assert rc == 1 and "read-only file system" in err and "Traceback" not in err, err
        assert left == []


def test_zoo_save_onto_a_full_disk_leaves_nothing(tmp_path):
    rc, err, left = run_on_tmpfs(tmp_path, "size=256k", ["zoo", "save", "tiny-random", "-o", str(tmp_path / "mnt/z")])
    assert rc == 1 and "the disk filled up" in err and "Traceback" not in err, err
    assert left == []  # no half-written folder, no temporary


def test_overwrite_never_turns_a_folder_into_a_file_or_back(tiny_random_bundle, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    _fails(["run", str(tiny_random_bundle), "--prompt", "p", "-o", str(folder), "--overwrite"], capsys, 1,
           "is a folder; the output is a file")
    file = tmp_path / "a-file.png"
    file.write_bytes(b"mine")
    _fails(["export", "tiny-random", "-o", str(file), "--overwrite"], capsys, 1, "is a file; the output is a folder")
    _fails(["zoo", "save", "tiny-random", "-o", str(file), "--overwrite"], capsys, 1, "is a file")
    assert (folder / "keep.txt").read_text() == "mine" and file.read_bytes() == b"mine"


def test_bench_json_that_cannot_be_written_fails_before_the_benchmark(tiny_random_bundle, tmp_path, capsys):
    start = time.perf_counter()
    _fails(["bench", str(tiny_random_bundle), "--json", str(tiny_random_bundle / "edgeldm.json" / "r.json")], capsys,
           1, "is a file, not a folder")
    _fails(["bench", str(tiny_random_bundle), "--history", str(tiny_random_bundle / "edgeldm.json")], capsys, 1,
           "is a file; a folder is needed here")
    _fails(["bench", str(tiny_random_bundle), "--gate", "10%"], capsys, 1, "give --history DIR too")
    assert time.perf_counter() - start < 5  # no target process was started
    assert list(tmp_path.iterdir()) == []


# --- the output format, the pipe, the unexpected -----------------------------------------------------------


def test_the_image_suffix_picks_the_format(tiny_random_bundle, tmp_path, capsys):
    for name, magic in (("x.jpg", b"\xff\xd8\xff"), ("x.png", b"\x89PNG"), ("x.webp", b"RIFF")):
        assert main(["-q", "run", str(tiny_random_bundle), "--prompt", "p", "--steps", "1", "-o",
                     str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name
    _fails(["run", str(tiny_random_bundle), "--prompt", "p", "-o", str(tmp_path / "x.foo")], capsys, 1,
           "cannot tell the image format")
    assert not (tmp_path / "x.foo").exists()


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "edgeldm", "info", "tiny-random", "--json", "--operators"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away (`| head` after its lines) before the document is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "Broken pipe" not in err, err


def test_an_unexpected_error_is_one_line_and_a_hint(monkeypatch, capsys):
    import edgeldm.zoo as zoo

    def broken(name):
        raise RuntimeError("something nobody foresaw\nwith a second line")

    monkeypatch.setattr(zoo, "get_zoo_entry", broken)
    err = _fails(["zoo", "save", "tiny-random", "-o", "unused"], capsys, 1,
                 "error: RuntimeError: something nobody foresaw", "run with --verbose for the traceback")
    assert "second line" not in err and len(err.strip().splitlines()) == 2


def test_a_long_prompt_warns_with_a_short_line(tiny_random_bundle):
    import logging

    from edgeldm.runtimes.tokenizer import PromptTokenizer

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("edgeldm").addHandler(handler)
    try:
        PromptTokenizer(tiny_random_bundle / "tokenizer")(["a red circle " * 3000])
    finally:
        logging.getLogger("edgeldm").removeHandler(handler)
    message = records[0].getMessage()
    assert "longer than 77 tokens" in message and "tokens more" in message and len(message) < 300


def test_runtime_help_and_imports_name_every_backend(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "coreml" in capsys.readouterr().out
    from edgeldm.runtimes import Text2Image  # noqa: F401 - the package exports its entry point


# --- signals, stale temporaries, permissions ---------------------------------------------------------------


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    out = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "edgeldm", "export", "tiny-random", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".b.tmp-") for p in tmp_path.iterdir()):  # the export is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.1)
    proc.terminate()
    assert proc.wait(timeout=60) == 143
    assert "terminated" in proc.stderr.read()
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_runs_temporaries_are_removed_on_the_next_run(tmp_path, capsys):
    stale = tmp_path / f".z.tmp-{_dead_pid()}-abcd"
    (stale / "unet").mkdir(parents=True)
    live = tmp_path / f".z.tmp-{os.getppid()}-efgh"  # a writer still alive: left alone
    live.mkdir()
    other = tmp_path / f".other.tmp-{_dead_pid()}-ijkl"  # another output's: not ours to judge
    other.mkdir()
    assert main(["-q", "zoo", "save", "tiny-random", "-o", str(tmp_path / "z")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "z"])


def test_a_previous_output_moved_aside_by_a_killed_run_is_restored(tmp_path):
    from edgeldm.atomic import remove_stale_temporaries

    aside = tmp_path / f".bundle.old-{_dead_pid()}"
    aside.mkdir()
    (aside / "edgeldm.json").write_text("{}")
    remove_stale_temporaries(tmp_path / "bundle")
    assert (tmp_path / "bundle" / "edgeldm.json").read_text() == "{}" and not aside.exists()


@pytest.mark.parametrize("umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, folder_mode, file_mode):
    from edgeldm.atomic import atomic_output_dir, atomic_write_bytes

    old = os.umask(umask)
    try:
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
        atomic_write_bytes(tmp_path / "single.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == folder_mode
    assert (tmp_path / "single.json").stat().st_mode & 0o777 == file_mode


def test_a_failed_command_loses_nothing_of_its_input(tiny_random_dir, tmp_path, capsys):
    digest = tree_digest(tiny_random_dir)
    _fails(["export", str(tiny_random_dir), "-o", str(tiny_random_dir / "inside")], capsys, 1, "never writes into")
    _fails(["generate", str(tiny_random_dir), "--prompt", "p", "--height", "30", "-o", str(tmp_path / "x.png")],
           capsys, 1, "multiples of")
    assert tree_digest(tiny_random_dir) == digest


def test_info_json_is_valid(capsys):
    assert main(["info", "tiny-random", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "edgeldm.info/1"


def test_pipes_devices_dangling_links_and_trailing_slashes_are_not_outputs(tiny_random_bundle, tmp_path, capsys):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    _fails(["bench", str(tiny_random_bundle), "--json", str(fifo)], capsys, 1, "is a device, pipe or socket")
    assert fifo.is_fifo()
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    _fails(["run", str(tiny_random_bundle), "--prompt", "p", "-o", str(dangling)], capsys, 1, "already exists")
    assert dangling.is_symlink()
    _fails(["run", str(tiny_random_bundle), "--prompt", "p", "-o", f"{tmp_path}/new.png/"], capsys, 1,
           "ends with a separator")
    _fails(["run", str(tiny_random_bundle), "--prompt", "p", "-o", str(tmp_path / "x.xbm")], capsys, 1,
           "cannot tell the image format")


@pytest.mark.parametrize("argv, needle", [
    (["run", "{bundle}", "--prompt", "p", "-o", "{tmp}/x.png", "--threads", "100000"], "4x this machine's cores"),
    (["quantize", "{bundle}", "-o", "{tmp}/q", "--backend", "onnx", "--scheme", "dynamic", "--min-psnr", "nan"],
     "finite number of dB"),
])
def test_numbers_that_would_hurt_are_refused_while_parsing(tiny_random_bundle, tmp_path, capsys, argv, needle):
    _fails([a.format(bundle=tiny_random_bundle, tmp=tmp_path) for a in argv], capsys, 2, needle)


@pytest.mark.parametrize("value, needle", [("nan%", "finite"), ("inf", "finite"), ("10", "ambiguous"),
                                           ("-5%", "finite amount >= 0")])
def test_a_gate_that_could_not_fail_is_refused(tiny_random_bundle, tmp_path, capsys, value, needle):
    _fails(["bench", str(tiny_random_bundle), "--history", str(tmp_path / "h"), f"--gate={value}"], capsys, 1, needle)
    assert not (tmp_path / "h").exists()


def test_a_stale_name_with_a_huge_pid_blocks_nothing(tiny_random_bundle, tmp_path):
    planted = tmp_path / ".c.png.tmp-99999999999999999999999-x"
    planted.write_text("")
    assert main(["-q", "run", str(tiny_random_bundle), "--prompt", "p", "--steps", "1", "-o",
                 str(tmp_path / "c.png")]) == 0
    assert planted.exists()  # not a pid: not ours to remove


def test_weights_written_by_libraries_follow_the_umask_too(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["-q", "zoo", "save", "tiny-random", "-o", str(tmp_path / "z")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "z").rglob("*") if p.is_file()}
    assert modes["diffusion_pytorch_model.safetensors"] == 0o644 and set(modes.values()) == {0o644}


def test_a_list_flag_given_twice_adds_up():
    """`--backend onnx --backend openvino` is `--backend onnx,openvino`: the last one no longer wins silently."""
    from edgeldm.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["export", "tiny", "-o", "x", "--backend", "onnx", "--backend", "openvino,onnx"])
    assert args.backend == ("onnx", "openvino")
    assert parser.parse_args(["export", "tiny", "-o", "x"]).backend == ("onnx", "openvino")  # the default
    args = parser.parse_args(["quantize", "b", "-o", "q", "--backend", "onnx", "--scheme", "int8",
                              "--components", "unet", "--components", "vae_decoder"])
    assert args.components == ("unet", "vae_decoder")


def test_sigterm_wrapped_by_a_native_library_still_exits_143(capsys):
    """OpenVINO's frontends call back into Python and turn the Terminated raised there into their own
    RuntimeError: the run was still terminated, and its exit code says so."""
    import signal

    from edgeldm.entry import run_guarded
    from edgeldm.errors import Terminated

    def body():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except Terminated:
            raise RuntimeError("Check 'false' failed at src/frontends/common/src/input_model.cpp:21") from None
        return 0

    assert run_guarded(body) == 143
    assert "terminated" in capsys.readouterr().err
    assert run_guarded(lambda: 0) == 0  # the next run starts unterminated
    assert run_guarded(lambda: (_ for _ in ()).throw(RuntimeError("boom"))) == 1
    assert "RuntimeError: boom" in capsys.readouterr().err


def test_sheet_and_json_paths_are_checked_before_the_work(tiny_random_bundle, tmp_path, capsys):
    """A contact sheet takes its format from its suffix like every image edgeldm writes; a suffix that names
    none, or an empty --json / --sheet, is refused before anything is generated."""
    assert main(["eval", "tiny-random", "--prompts", "2", "--steps", "1", "--sheet", str(tmp_path / "s.xyz")]) == 1
    assert "suffix .xyz" in capsys.readouterr().err and not (tmp_path / "s.xyz").exists()
    for flag in ("--json", "--sheet"):
        assert main(["bench", str(tiny_random_bundle), "--repeat", "1", flag, ""]) == 1
        assert f"{flag} was given an empty path" in capsys.readouterr().err
    from edgeldm.benchmarks.contact_sheet import contact_sheet

    images = np.zeros((2, 16, 16, 3), np.uint8)
    contact_sheet(images, ["a", "b"], tmp_path / "s.jpg")
    assert (tmp_path / "s.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, as the name says


@pytest.mark.parametrize("opt_in", [None, "1"])
def test_openvinos_usage_telemetry_is_off_in_edgeldms_processes_unless_asked(opt_in):
    """OpenVINO's converter sends usage events from forked processes unless the user opted out: offline they
    wait for timeouts, and a SIGTERM during one left an export hanging. Its own stub stands in."""
    code = ("import edgeldm, openvino.tools.ovc.convert_impl as c, nncf.telemetry.wrapper as w; "
            "print(c.tm.__name__, type(w.telemetry).__name__)")
    env = {k: v for k, v in os.environ.items() if k != "EDGELDM_OPENVINO_TELEMETRY"}
    if opt_in:
        env["EDGELDM_OPENVINO_TELEMETRY"] = opt_in
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    ovc, nncf_telemetry = out.stdout.split()
    if opt_in:
        assert ovc == "openvino_telemetry"
    else:
        assert ovc == "openvino.tools.ovc.telemetry_stub" and nncf_telemetry != "NNCFTelemetry"

"""`import edgeldm` and `import edgeldm.runtimes` must work where torch, diffusers and transformers cannot be imported."""

import json
import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import sys
    class _Block:
        BLOCKED = ("torch", "diffusers", "transformers", "accelerate", "torch_pruning")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"blocked for this test: {name}")
            return None
    sys.meta_path.insert(0, _Block())
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_blocker_really_blocks_torch():
    proc = run_blocked("import torch")
    assert proc.returncode != 0 and "blocked for this test: torch" in proc.stderr


def test_core_and_runtimes_import_without_torch():
    proc = run_blocked(
        """
        import edgeldm, edgeldm.runtimes, edgeldm.errors, edgeldm.zoo, edgeldm.cli
        import edgeldm.compressor, edgeldm.exporters, edgeldm.calibration, edgeldm.benchmarks
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "transformers"))
        print("HEAVY", heavy)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_cli_without_torch_lists_zoo_and_explains_missing_extra():
    proc = run_blocked(
        """
        import io, contextlib, json
        from edgeldm.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["zoo", "list", "--json"])
        print("ZOO", json.dumps([r["name"] for r in json.loads(out.getvalue())]))
        print("RC", rc)
        rc = main(["info", "tiny-random"])
        print("RC2", rc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    names = json.loads(proc.stdout.split("ZOO ", 1)[1].splitlines()[0])
    assert "sd15" in names and "tiny-random" in names
    assert "RC 0" in proc.stdout and "RC2 1" in proc.stdout
    assert "pip install 'edgeldm[compress]'" in proc.stderr
    assert "Traceback" not in proc.stderr

"""docs/python-api.md runs as written: every ```python block, in order, in one namespace (the chain export ->
prune -> finetune -> distill -> quantize -> evaluate -> bench -> compress on tiny-random, no argparse)."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_page_has_an_example_per_stage():
    code = "\n".join(_blocks())
    for stage in ("export", "prune", "finetune", "distill", "distill_vae", "quantize", "evaluate", "bench",
                  "compress"):
        assert f"edgeldm.{stage}(" in code, stage


@pytest.mark.timeout(900)
def test_every_example_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(_blocks()):
        exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)
    assert (tmp_path / "bundles" / "lcm-int8" / "edgeldm.json").is_file()
    assert namespace["pruned"].metrics["operators"] == 2 and 0 < namespace["pruned"].metrics["macs_kept"] < 1
    assert namespace["small"].output == Path("bundles/lcm-int8")
    assert (tmp_path / "models" / "lcm-taesd" / "vae" / "config.json").is_file()
    assert 0 <= namespace["scores"].metrics["joint_accuracy"] <= 1
    assert namespace["timing"].metrics["image_latency"] > 0
    assert Path(namespace["summary"]["final_bundle"]).is_dir()
    assert not list(tmp_path.glob("models/*.work"))  # the training stages removed their work folders


def test_the_api_refuses_what_the_cli_refuses(tmp_path):
    import edgeldm

    (tmp_path / "taken").mkdir()
    with pytest.raises(edgeldm.OutputExistsError):
        edgeldm.export("tiny-random", tmp_path / "taken")
    with pytest.raises(TypeError, match="did you mean 'samples'"):
        edgeldm.prune("tiny-random", tmp_path / "p", sampels=2)
    with pytest.raises(edgeldm.EdgeLDMError, match="exclude each other"):
        edgeldm.prune("tiny-random", tmp_path / "p", edgeldm.PruneOptions(remove=2, target_macs=0.5))
    # a keyword replaces its rival of the same exclusive group, as a later flag does on the command line
    from edgeldm.options import resolve

    assert resolve(edgeldm.PruneOptions, edgeldm.PruneOptions(target_macs=0.5), {"remove": 2}).target_macs is None
    with pytest.raises(edgeldm.EdgeLDMError, match="needs a teacher"):
        edgeldm.finetune("tiny-random", tmp_path / "f")


def test_the_api_is_there_without_torch():
    code = textwrap.dedent("""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "diffusers", "transformers", "accelerate"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, _Block())
        import edgeldm
        print(edgeldm.prune.__name__, edgeldm.PruneOptions().samples, edgeldm.QuantizeOptions().calib_samples)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "prune"

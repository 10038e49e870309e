"""Recipes: the stages ``edgeldm compress`` runs, their options and their quality gates, as one YAML file.

::

    name: tiny-demo
    description: prune, recover, distil to 4 steps, export and quantize tiny
    stages:
      - prune: {target-macs: 0.65, samples: 16}
      - finetune: {steps: 1000}
      - evaluate: {prompts: 100}
        gate: joint_accuracy >= 0.9 * baseline
      - export: {backend: onnx}

Each stage is one stage function of the library (``edgeldm.prune``, ...; the same as one ``edgeldm``
subcommand, ``evaluate`` being ``edgeldm eval``) and its options are the fields of that stage's options
dataclass (``target-macs`` or ``target_macs``), which are also the command's flags. They are checked on load
against the dataclass — so a recipe can set exactly what the command line and the Python API can, and an
unknown key, a wrong type, a value outside the choices or two exclusive options are an error naming the
recipe line. What chains the stages (inputs, outputs, caches) the runner sets.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import EdgeLDMError
from ..options import choices_hint, convert, exclusive_with, to_argv
from .bench import BenchOptions, bench
from .convert import ConvertOptions
from .convert import convert as convert_model
from .distill import DistillOptions, distill
from .distill_vae import DistillVaeOptions, distill_vae
from .evaluate import EvaluateOptions, evaluate
from .export import ExportOptions, export
from .finetune import FinetuneOptions, finetune
from .prune import PruneOptions, prune
from .quantize import QuantizeOptions, quantize

RECIPES_DIR = Path(__file__).parent.parent / "recipes"


@dataclass(frozen=True)
class StageKind:
    command: str  # the edgeldm subcommand that runs the same stage
    options: type  # its options dataclass: what a recipe may set
    run: Callable  # its library function (edgeldm.prune, ...), which the runner calls
    consumes: str  # "model", "bundle" or "any" (the latest artifact)
    produces: str | None  # "model", "bundle" or None (measurement only)
    metrics: tuple[str, ...]  # what a gate can test
    baseline: tuple[str, ...] = ()  # metrics with a baseline (the original model measured the same way)
    #: what the runner decides (inputs, outputs, caches): named so that a recipe setting one hears why not
    runner_sets: tuple[str, ...] = ("model", "output", "overwrite", "allow_pickle")


_SIZE = ("size_bytes",)
_EVAL = ("joint_accuracy", "shape_accuracy", "color_accuracy", "position_accuracy", "size_accuracy", "fd",
         "seconds_per_image")
_BENCH = ("image_latency", "unet_step_latency", "text_encoder_latency", "vae_decode_latency", "cold_load",
          "peak_rss_bytes", "size_bytes")
_RUNNER = StageKind.runner_sets

#: the one registry of stage kinds
STAGE_KINDS: dict[str, StageKind] = {
    # first in a recipe: bakes LoRA adapters into the user's model; its output is what later stages call the
    # original (the finetune teacher, the baseline)
    "convert": StageKind("convert", ConvertOptions, convert_model, "model", "model", _SIZE, _SIZE),
    "prune": StageKind("prune", PruneOptions, prune, "model", "model", _SIZE + ("macs_kept", "params_kept", "operators"),
                       _SIZE, _RUNNER + ("score_only", "json", "cache")),
    "finetune": StageKind("finetune", FinetuneOptions, finetune, "model", "model", _SIZE + ("final_loss",), _SIZE,
                          _RUNNER + ("pruned", "data_cache")),
    "distill": StageKind("distill", DistillOptions, distill, "model", "model", _SIZE + ("ode_psnr_1step",), _SIZE,
                         _RUNNER + ("data_cache",)),
    "distill-vae": StageKind("distill-vae", DistillVaeOptions, distill_vae, "model", "model", _SIZE + ("decoder_psnr",), _SIZE),
    "export": StageKind("export", ExportOptions, export, "model", "bundle", _SIZE + ("validation_psnr_min",), _SIZE),
    "quantize": StageKind("quantize", QuantizeOptions, quantize, "bundle", "bundle",
                          _SIZE + ("output_psnr_min", "image_psnr_mean"), _SIZE, _RUNNER + ("bundle",)),
    "evaluate": StageKind("eval", EvaluateOptions, evaluate, "any", None, _EVAL, _EVAL,
                          _RUNNER + ("json", "sheet", "vae_ceiling")),
    "bench": StageKind("bench", BenchOptions, bench, "any", None, _BENCH + ("joint_accuracy", "fd"),
                       _BENCH + ("joint_accuracy", "fd"), _RUNNER + ("target", "json", "history", "sheet", "markdown",
                                                                     "gate")),
}

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_GATE = re.compile(r"^\s*(?P<metric>[a-z_][a-z0-9_]*)\s*(?P<op>>=|<=|==|>|<)\s*(?P<rhs>.+?)\s*$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RHS = re.compile(rf"^(?:(?P<num>{_NUMBER})|(?:(?P<f1>{_NUMBER})\s*\*\s*)?baseline(?:\s*\*\s*(?P<f2>{_NUMBER}))?)$")


@dataclass(frozen=True)
class Gate:
    """``metric op value`` or ``metric op [factor *] baseline``; written as the user wrote it."""

    text: str
    metric: str
    op: str
    value: float | None  # a constant bound, or None with factor: relative to the baseline
    factor: float = 1.0

    def bound(self, baseline: dict) -> float:
        if self.value is not None:
            return self.value
        return self.factor * baseline[self.metric]

    def check(self, metrics: dict, baseline: dict) -> tuple[bool, str]:
        value = metrics.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            # e.g. distill's ode_psnr_1step with --validation-prompts 0: a gate on it cannot pass silently
            return False, f"{self.metric} was not measured by this stage's options; it FAILS ({self.text})"
        bound = self.bound(baseline)
        ok = bool(_OPS[self.op](value, bound))
        return ok, f"{self.metric} = {_fmt(value)} {'meets' if ok else 'FAILS'} {self.op} {_fmt(bound)} ({self.text})"


def _fmt(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def parse_gate(text: str, kind: str, where: str) -> Gate:
    m = _GATE.match(str(text))
    spec = STAGE_KINDS[kind]
    if not m:
        raise EdgeLDMError(f"{where}: gate {text!r} is not 'METRIC OP VALUE'",
                           hint="e.g. 'joint_accuracy >= 0.95 * baseline' or 'output_psnr_min >= 30'")
    metric, op, rhs = m["metric"], m["op"], m["rhs"]
    if metric not in spec.metrics:
        raise EdgeLDMError(f"{where}: a {kind} stage has no metric {metric!r}",
                           hint=choices_hint(metric, spec.metrics))
    r = _RHS.match(rhs)
    if not r:
        raise EdgeLDMError(f"{where}: cannot read {rhs!r} in gate {text!r}",
                           hint="the right side is a number, 'baseline' or 'NUMBER * baseline'")
    if r["num"] is not None:
        return Gate(str(text), metric, op, float(r["num"]))
    if metric not in spec.baseline:
        raise EdgeLDMError(f"{where}: {metric} of a {kind} stage has no baseline to compare with",
                           hint="compare with a number instead")
    return Gate(str(text), metric, op, None, float(r["f1"] or r["f2"] or 1.0))


@dataclass(frozen=True)
class Stage:
    kind: str
    options: dict  # parser dest -> value, as validated
    gates: tuple[Gate, ...] = ()
    line: int = 0

    @property
    def spec(self) -> StageKind:
        return STAGE_KINDS[self.kind]

    def argv(self) -> list[str]:
        """The options as command-line flags of the stage's subcommand."""
        return to_argv(self.spec.options, self.options)

    def build(self):
        """The options dataclass instance the stage function takes."""
        from ..options import build

        return build(self.spec.options, self.options)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    stages: tuple[Stage, ...]
    text: str = ""  # the file as written: stamped into the final manifest
    source: str = ""
    overrides: tuple[str, ...] = field(default=())

    def resolved(self) -> dict:
        return {"name": self.name, "source": self.source, "overrides": list(self.overrides),
                "stages": [{"stage": s.kind, "options": s.options, "gates": [g.text for g in s.gates]}
                           for s in self.stages]}


# --- loading -------------------------------------------------------------------------------------


def shipped_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml"))}


def resolve_recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise EdgeLDMError(f"no recipe {name_or_path!r}: not a file and not a shipped recipe",
                       hint=choices_hint(name_or_path, list(shipped)))


def load_recipe(name_or_path: str, overrides: tuple[str, ...] = ()) -> Recipe:
    """Read and validate a recipe (a shipped name or a YAML file); ``overrides`` are ``STAGE.KEY=VALUE``."""
    import yaml

    path = resolve_recipe_path(name_or_path)
    try:
        text = path.read_text()
        root = yaml.compose(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeLDMError(f"cannot read recipe {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise EdgeLDMError(f"recipe {path} is not valid YAML: {exc}") from None
    where = f"{path}"
    if not isinstance(root, yaml.MappingNode):
        raise EdgeLDMError(f"{where}: a recipe is a mapping with 'stages' (and optional 'name', 'description')")
    top = _mapping(root, path)
    unknown = set(top) - {"name", "description", "stages"}
    for key in unknown:
        raise EdgeLDMError(f"{path}:{_line(top[key][0])}: unknown key {key!r}",
                           hint=choices_hint(key, ["name", "description", "stages"]))
    if "stages" not in top:
        raise EdgeLDMError(f"{where}: no 'stages' list")
    stages_node = top["stages"][1]
    if not isinstance(stages_node, yaml.SequenceNode) or not stages_node.value:
        raise EdgeLDMError(f"{path}:{_line(stages_node)}: 'stages' must be a non-empty list")
    stages = [_stage(node, path) for node in stages_node.value]
    stages = _apply_overrides(stages, overrides)
    _check_chain(stages, path)
    name = str(_scalar(top["name"][1])) if "name" in top else path.stem
    description = str(_scalar(top["description"][1])) if "description" in top else ""
    return Recipe(name=name, description=description, stages=tuple(stages), text=text, source=str(path),
                  overrides=tuple(overrides))


def _line(node) -> int:
    return node.start_mark.line + 1


def _scalar(node):
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise EdgeLDMError(f"line {_line(node)}: expected a single value")
    return yaml.safe_load(yaml.serialize(node))


def _mapping(node, path) -> dict:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise EdgeLDMError(f"{path}:{_line(node)}: expected a mapping (key: value)")
    out = {}
    for k, v in node.value:
        key = str(_scalar(k))
        if key in out:
            raise EdgeLDMError(f"{path}:{_line(k)}: {key!r} appears twice")
        out[key] = (k, v)
    return out


def _stage(node, path) -> Stage:
    entry = _mapping(node, path)
    kinds = [k for k in entry if k in STAGE_KINDS]
    extra = [k for k in entry if k not in STAGE_KINDS and k not in ("gate", "gates")]
    if extra or len(kinds) != 1:
        bad = extra[0] if extra else None
        line = _line(entry[bad][0]) if bad else _line(node)
        raise EdgeLDMError(f"{path}:{line}: " + (f"unknown stage {bad!r}" if bad else
                                                 "each stage names exactly one of: " + ", ".join(STAGE_KINDS)),
                           hint=choices_hint(bad, list(STAGE_KINDS)) if bad else "")
    kind = kinds[0]
    key_node, opts_node = entry[kind]
    import yaml

    options = {}
    if not (isinstance(opts_node, yaml.ScalarNode) and opts_node.value in ("", "~", "null")):
        for key, (k, v) in _mapping(opts_node, path).items():
            raw = [_scalar(x) for x in v.value] if isinstance(v, yaml.SequenceNode) else _scalar(v)
            dest, value = validate_option(kind, key, raw, f"{path}:{_line(k)}")
            clash = [d for d in exclusive_with(STAGE_KINDS[kind].options, dest) if d in options]
            if clash:
                raise EdgeLDMError(f"{path}:{_line(k)}: {key} and {clash[0].replace('_', '-')} exclude each other "
                                   f"(edgeldm {STAGE_KINDS[kind].command})")
            options[dest] = value
    gates = []
    for gkey in ("gate", "gates"):
        if gkey in entry:
            gnode = entry[gkey][1]
            items = gnode.value if isinstance(gnode, yaml.SequenceNode) else [gnode]
            gates += [parse_gate(_scalar(g), kind, f"{path}:{_line(g)}") for g in items]
    return Stage(kind, options, tuple(gates), _line(key_node))


def validate_option(kind: str, key: str, value, where: str):
    """``key: value`` of a ``kind`` stage -> (options field, checked value); errors say where."""
    spec = STAGE_KINDS[kind]
    if key.replace("-", "_") in spec.runner_sets:
        raise EdgeLDMError(f"{where}: {key!r} is set by `edgeldm compress` for a {kind} stage, not by the recipe")
    return convert(spec.options, key, value, where, f"a {kind} stage (edgeldm {spec.command})")


def _apply_overrides(stages: list[Stage], overrides) -> list[Stage]:
    """``STAGE.KEY=VALUE`` (every stage of that kind) or ``N.KEY=VALUE`` (the N-th stage, from 1)."""
    import yaml

    stages = list(stages)
    for text in overrides:
        target, eq, raw = text.partition("=")
        head, dot, key = target.partition(".")
        if not eq or not dot or not key:
            raise EdgeLDMError(f"--set {text!r}: expected STAGE.KEY=VALUE", hint="e.g. --set finetune.steps=100")
        if head.isdigit():
            picked = [int(head) - 1] if 1 <= int(head) <= len(stages) else []
        else:
            picked = [i for i, s in enumerate(stages) if s.kind == head]
        if not picked:
            raise EdgeLDMError(f"--set {text!r}: the recipe has no stage {head!r}",
                               hint="stages: " + ", ".join(f"{i + 1}.{s.kind}" for i, s in enumerate(stages)))
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:  # e.g. a glob starting with '*' (a YAML alias): take the text as it is
            value = raw
        for i in picked:
            s = stages[i]
            dest, checked = validate_option(s.kind, key, value, f"--set {text}")
            # an override replaces what the recipe chose, including a rival of the same exclusive group
            kept = {k: v for k, v in s.options.items() if k not in exclusive_with(s.spec.options, dest)}
            stages[i] = Stage(s.kind, {**kept, dest: checked}, s.gates, s.line)
    return stages


def _check_chain(stages: list[Stage], path) -> None:
    have_bundle = False
    for i, s in enumerate(stages):
        if s.kind == "convert" and i:
            raise EdgeLDMError(f"{path}:{s.line}: a convert stage bakes adapters into the model the recipe starts "
                               "from, so it comes first", hint="move it to the top of the stages")
        if s.spec.consumes == "model" and have_bundle:
            raise EdgeLDMError(f"{path}:{s.line}: a {s.kind} stage needs a model, but an earlier stage already "
                               "exported a bundle", hint="put model stages (prune, finetune, distill) before export")
        if s.spec.consumes == "bundle" and not have_bundle:
            raise EdgeLDMError(f"{path}:{s.line}: a {s.kind} stage needs a bundle: add an export stage before it")
        have_bundle = have_bundle or s.spec.produces == "bundle"


def options_digest(stage: Stage) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([stage.kind, stage.options], sort_keys=True).encode()).hexdigest()

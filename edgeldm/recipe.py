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

Each stage is one ``edgeldm`` subcommand (``evaluate`` is ``edgeldm eval``) and its options are that
command's own flags (``target-macs`` or ``target_macs``), checked on load against the command's parser —
so a recipe can set exactly what the command line can, and an unknown key, a wrong type or a value outside
the choices is an error naming the recipe line. What chains the stages (inputs, outputs) the runner sets.
"""

from __future__ import annotations

import argparse
import difflib
import json
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EdgeLDMError

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class StageKind:
    command: str  # the edgeldm subcommand
    consumes: str  # "model", "bundle" or "any" (the latest artifact)
    produces: str | None  # "model", "bundle" or None (measurement only)
    runner_sets: tuple[str, ...]  # parser dests the runner fills: the recipe may not set them
    metrics: tuple[str, ...]  # what a gate can test
    baseline: tuple[str, ...] = ()  # metrics with a baseline (the original model measured the same way)


_SIZE = ("size_bytes",)
_EVAL = ("joint_accuracy", "shape_accuracy", "color_accuracy", "position_accuracy", "size_accuracy", "fd",
         "seconds_per_image")
_BENCH = ("image_latency", "unet_step_latency", "text_encoder_latency", "vae_decode_latency", "cold_load",
          "peak_rss_bytes", "size_bytes")

#: the one registry of stage kinds
STAGE_KINDS: dict[str, StageKind] = {
    "prune": StageKind("prune", "model", "model", ("model", "output", "overwrite", "score_only", "json", "cache",
                                                   "allow_pickle"),
                       _SIZE + ("macs_kept", "params_kept", "operators"), _SIZE),
    "finetune": StageKind("finetune", "model", "model", ("pruned", "output", "overwrite", "allow_pickle",
                                                         "data_cache"),
                          _SIZE + ("final_loss",), _SIZE),
    "distill": StageKind("distill", "model", "model", ("model", "output", "overwrite", "allow_pickle",
                                                       "data_cache"),
                         _SIZE + ("ode_psnr_1step",), _SIZE),
    "distill-vae": StageKind("distill-vae", "model", "model", ("model", "output", "overwrite", "allow_pickle"),
                             _SIZE + ("decoder_psnr",), _SIZE),
    "export": StageKind("export", "model", "bundle", ("model", "output", "overwrite", "allow_pickle"),
                        _SIZE + ("validation_psnr_min",), _SIZE),
    "quantize": StageKind("quantize", "bundle", "bundle", ("bundle", "output", "overwrite"),
                          _SIZE + ("output_psnr_min", "image_psnr_mean"), _SIZE),
    "evaluate": StageKind("eval", "any", None, ("model", "json", "sheet", "vae_ceiling", "allow_pickle"),
                          _EVAL, _EVAL),
    "bench": StageKind("bench", "any", None, ("target", "json", "history", "sheet", "markdown"),
                       _BENCH + ("joint_accuracy", "fd"), _BENCH + ("joint_accuracy", "fd")),
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
        value, bound = metrics[self.metric], self.bound(baseline)
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
                           hint=_choices_hint(metric, spec.metrics))
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


def _choices_hint(bad: str, choices) -> str:
    close = difflib.get_close_matches(bad, list(choices), n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + f"choose from: {', '.join(choices)}"


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
        out: list[str] = []
        for dest, value in self.options.items():
            flag = "--" + dest.replace("_", "-")
            if isinstance(value, bool):  # a switch; `false` of an on-by-default one (--sensitivity) says --no-
                out += [flag] if value else [f"--no-{dest.replace('_', '-')}"] if dest in NEGATABLE else []
            elif isinstance(value, list):  # a repeatable option: the flag once per value
                out += [x for v in value for x in (flag, str(v))]
            else:
                out += [flag, str(value)]
        return out


#: switches whose default depends on other options, so that `false` in a recipe must be said explicitly
NEGATABLE = ("sensitivity",)


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
                       hint=_choices_hint(name_or_path, list(shipped)))


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
                           hint=_choices_hint(key, ["name", "description", "stages"]))
    if "stages" not in top:
        raise EdgeLDMError(f"{where}: no 'stages' list")
    stages_node = top["stages"][1]
    if not isinstance(stages_node, yaml.SequenceNode) or not stages_node.value:
        raise EdgeLDMError(f"{path}:{_line(stages_node)}: 'stages' must be a non-empty list")
    parsers = stage_parsers()
    stages = [_stage(node, path, parsers) for node in stages_node.value]
    stages = _apply_overrides(stages, overrides, parsers)
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


def _stage(node, path, parsers) -> Stage:
    entry = _mapping(node, path)
    kinds = [k for k in entry if k in STAGE_KINDS]
    extra = [k for k in entry if k not in STAGE_KINDS and k not in ("gate", "gates")]
    if extra or len(kinds) != 1:
        bad = extra[0] if extra else None
        line = _line(entry[bad][0]) if bad else _line(node)
        raise EdgeLDMError(f"{path}:{line}: " + (f"unknown stage {bad!r}" if bad else
                                                 "each stage names exactly one of: " + ", ".join(STAGE_KINDS)),
                           hint=_choices_hint(bad, list(STAGE_KINDS)) if bad else "")
    kind = kinds[0]
    key_node, opts_node = entry[kind]
    import yaml

    options = {}
    if not (isinstance(opts_node, yaml.ScalarNode) and opts_node.value in ("", "~", "null")):
        for key, (k, v) in _mapping(opts_node, path).items():
            raw = [_scalar(x) for x in v.value] if isinstance(v, yaml.SequenceNode) else _scalar(v)
            dest, value = validate_option(kind, key, raw, parsers[kind], f"{path}:{_line(k)}")
            clash = [d for d in exclusive_with(parsers[kind], dest) if d in options]
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


def stage_parsers() -> dict[str, argparse.ArgumentParser]:
    """The subcommand parser behind each stage kind (the CLI's own)."""
    from .cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {kind: sub.choices[spec.command] for kind, spec in STAGE_KINDS.items()}


def validate_option(kind: str, key: str, value, parser: argparse.ArgumentParser, where: str):
    """``key: value`` of a ``kind`` stage -> (parser dest, checked value); errors say where."""
    spec = STAGE_KINDS[kind]
    dest = key.replace("-", "_")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    allowed = [d for d in actions if d not in spec.runner_sets]
    if dest in spec.runner_sets:
        raise EdgeLDMError(f"{where}: {key!r} is set by `edgeldm compress` for a {kind} stage, not by the recipe")
    if dest not in actions:
        raise EdgeLDMError(f"{where}: a {kind} stage (edgeldm {spec.command}) has no option {key!r}",
                           hint=_choices_hint(key.replace("_", "-"), [d.replace("_", "-") for d in allowed]))
    action = actions[dest]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise EdgeLDMError(f"{where}: {key} is a switch: true or false, got {value!r}")
        return dest, value
    if isinstance(action, argparse._AppendAction):  # repeatable: a list, or one value
        values = value if isinstance(value, list) else [value]
        return dest, [_convert(action, key, v, where) for v in values]
    return dest, _convert(action, key, value, where)


def _convert(action, key: str, value, where: str):
    if value is None or isinstance(value, (list, dict)):
        raise EdgeLDMError(f"{where}: {key} needs a single value, got {value!r}")
    if isinstance(value, bool):
        raise EdgeLDMError(f"{where}: {key} takes a value, not {value!r}")
    try:
        converted = action.type(str(value)) if action.type else str(value)
    except argparse.ArgumentTypeError as exc:  # the CLI's own checks (guidance, seed, ...) say what is wrong
        raise EdgeLDMError(f"{where}: {key}: {exc}") from None
    except (TypeError, ValueError):
        kind_name = getattr(action.type, "__name__", "value")
        raise EdgeLDMError(f"{where}: {key} must be {kind_name}, got {value!r}") from None
    if action.choices and converted not in action.choices:
        raise EdgeLDMError(f"{where}: {key} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def exclusive_with(parser: argparse.ArgumentParser, dest: str) -> list[str]:
    """The options argparse refuses together with ``dest`` (its mutually exclusive groups)."""
    out = []
    for group in parser._mutually_exclusive_groups:
        dests = [a.dest for a in group._group_actions]
        if dest in dests:
            out += [d for d in dests if d != dest]
    return out


def _apply_overrides(stages: list[Stage], overrides, parsers) -> list[Stage]:
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
            dest, checked = validate_option(s.kind, key, value, parsers[s.kind], f"--set {text}")
            # an override replaces what the recipe chose, including a rival of the same exclusive group
            kept = {k: v for k, v in s.options.items() if k not in exclusive_with(parsers[s.kind], dest)}
            stages[i] = Stage(s.kind, {**kept, dest: checked}, s.gates, s.line)
    return stages


def _check_chain(stages: list[Stage], path) -> None:
    have_bundle = False
    for s in stages:
        if s.spec.consumes == "model" and have_bundle:
            raise EdgeLDMError(f"{path}:{s.line}: a {s.kind} stage needs a model, but an earlier stage already "
                               "exported a bundle", hint="put model stages (prune, finetune, distill) before export")
        if s.spec.consumes == "bundle" and not have_bundle:
            raise EdgeLDMError(f"{path}:{s.line}: a {s.kind} stage needs a bundle: add an export stage before it")
        have_bundle = have_bundle or s.spec.produces == "bundle"


def options_digest(stage: Stage) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([stage.kind, stage.options], sort_keys=True).encode()).hexdigest()

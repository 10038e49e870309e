"""Stage options: one frozen dataclass per stage, whose fields carry their help text, choices and checks.

The command line (``edgeldm/commands/``), the recipe validator (``recipe.py``) and the Python API
(``edgeldm.prune(model, out, PruneOptions(...))``) all read the same declaration, so a default, a choice or
a help text is written once::

    @dataclass(frozen=True)
    class ExportOptions:
        precision: str = option("fp32", "graph precision", choices=("fp32", "fp16"))
        static: bool = option(False, "fixed shapes")

A field's CLI flag is ``--field-name``; a switch that defaults to True is offered as ``--no-field-name``, one
that defaults to None (decided later from other options) as ``--name / --no-name``. ``repeat=True`` fields
are tuples given by repeating the flag; ``group`` names a set of mutually exclusive fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import EdgeLDMError

_KEY = "edgeldm"


@dataclass(frozen=True)
class Meta:
    help: str
    choices: Callable[[], Sequence] | Sequence | None = None  # a callable reads a registry (torch-free) when asked
    parse: Callable[[str], Any] | None = None  # text -> value; default: the field's type (int, float, str)
    group: str | None = None  # fields of one group exclude each other
    metavar: str | None = None
    repeat: bool = False  # a tuple field, one value per flag
    show_default: bool = True  # append "(default X)" to the help

    def choice_list(self) -> list | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


def option(default, help: str, **meta):
    """A dataclass field with its CLI / recipe description (see the module docstring)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (a tuple, not a list)")
    return field(default=default, metadata={_KEY: Meta(help, **meta)})


def described_fields(cls) -> list[tuple[dataclasses.Field, Meta]]:
    """The fields of an options class that the CLI and recipes may set, in declaration order."""
    return [(f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def _base_type(cls, name: str):
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        hint = typing.get_args(hint)[0]
    return hint


def parser_of(cls, f: dataclasses.Field, meta: Meta) -> Callable[[str], Any]:
    if meta.parse is not None:
        return meta.parse
    kind = _base_type(cls, f.name)
    return kind if kind in (int, float, str) else str


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def split_list(text: str) -> tuple[str, ...]:
    """``a,b`` -> ``("a", "b")``: the comma-separated lists of the CLI (backends, components, op types)."""
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --- the command line ----------------------------------------------------------------------------


def add_arguments(parser, cls, *, skip: Sequence[str] = (), required: Sequence[str] = ()) -> None:
    """Add one argument per described field of ``cls`` to an argparse parser."""
    groups: dict[str, Any] = {}
    for f, meta in described_fields(cls):
        if f.name in skip:
            continue
        target = parser
        if meta.group:
            if meta.group not in groups:
                groups[meta.group] = parser.add_mutually_exclusive_group()
            target = groups[meta.group]
        help_text = meta.help
        shown = f.default is not None and not isinstance(f.default, bool) and f.default != ()
        if meta.show_default and shown and "default" not in help_text:
            help_text += f" (default {_shown(f.default)})"
        help_text = help_text.replace("%", "%%")
        kind = _base_type(cls, f.name)
        if kind is bool:
            if f.default is None:
                target.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
            elif f.default is True:
                target.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    help=help_text)
            else:
                target.add_argument(flag(f.name), action="store_true", help=help_text)
            continue
        kwargs = dict(type=parser_of(cls, f, meta), help=help_text, choices=meta.choice_list())
        if meta.metavar:
            kwargs["metavar"] = meta.metavar
        if meta.repeat:
            target.add_argument(flag(f.name), action="append", default=[], **kwargs)
        elif meta.parse is split_list:
            target.add_argument(flag(f.name), action=_CommaListAction, default=f.default,
                                required=f.name in required, **kwargs)
        else:
            target.add_argument(flag(f.name), default=f.default, required=f.name in required, **kwargs)


class _CommaListAction(argparse.Action):
    """A comma-separated list flag given more than once adds up (``--backend onnx --backend openvino`` is
    ``--backend onnx,openvino``) instead of the last one silently winning."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, "_comma_lists_given", set())
        current = tuple(getattr(namespace, self.dest) or ()) if self.dest in given else ()
        namespace._comma_lists_given = given | {self.dest}
        setattr(namespace, self.dest, current + tuple(v for v in values if v not in current))


def from_namespace(cls, args, **extra):
    """The options instance for parsed arguments (``extra`` sets fields the command fills itself)."""
    values = {}
    for f, meta in described_fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = tuple(value) if meta.repeat else value
    return cls(**{**values, **extra})


def to_argv(cls, options: dict) -> list[str]:
    """Options (field name -> value) as the command-line flags that set them."""
    described = {f.name: (f, meta) for f, meta in described_fields(cls)}
    out: list[str] = []
    for name, value in options.items():
        f, meta = described[name]
        if isinstance(value, bool):
            if value and f.default is not True:
                out.append(flag(name))
            elif not value and f.default is not False:
                out.append("--no-" + name.replace("_", "-"))
        elif meta.repeat:
            out += [x for v in value for x in (flag(name), str(v))]
        else:
            out += [flag(name), _shown(value)]
    return out


# --- recipes and the Python API ------------------------------------------------------------------


def choices_hint(bad: str | None, choices) -> str:
    close = difflib.get_close_matches(bad, list(choices), n=1) if bad else []
    return (f"did you mean {close[0]!r}? " if close else "") + f"choose from: {', '.join(choices)}"


def field_for(cls, key: str, where: str, what: str) -> tuple[dataclasses.Field, Meta]:
    """The described field a recipe key (``target-macs`` or ``target_macs``) names; a did-you-mean otherwise."""
    described = {f.name: (f, meta) for f, meta in described_fields(cls)}
    name = key.replace("-", "_")
    if name not in described:
        raise EdgeLDMError(f"{where}: {what} has no option {key!r}",
                           hint=choices_hint(key.replace("_", "-"), [n.replace("_", "-") for n in described]))
    return described[name]


def convert(cls, key: str, value, where: str, what: str = "this stage"):
    """A recipe value (YAML: already a bool, number or text) -> (field name, checked value)."""
    f, meta = field_for(cls, key, where, what)
    kind = _base_type(cls, f.name)
    if kind is bool:
        if not isinstance(value, bool):
            raise EdgeLDMError(f"{where}: {key} is a switch: true or false, got {value!r}")
        return f.name, value
    if meta.repeat:  # a list, or one value
        values = value if isinstance(value, list) else [value]
        return f.name, [_convert_one(cls, f, meta, key, v, where) for v in values]
    return f.name, _convert_one(cls, f, meta, key, value, where)


def _convert_one(cls, f, meta: Meta, key: str, value, where: str):
    import argparse

    if value is None or isinstance(value, (list, dict)):
        raise EdgeLDMError(f"{where}: {key} needs a single value, got {value!r}")
    if isinstance(value, bool):
        raise EdgeLDMError(f"{where}: {key} takes a value, not {value!r}")
    parse = parser_of(cls, f, meta)
    try:
        converted = parse(str(value))
    except (argparse.ArgumentTypeError, EdgeLDMError) as exc:  # the shared checks say what is wrong
        raise EdgeLDMError(f"{where}: {key}: {exc}") from None
    except (TypeError, ValueError):
        raise EdgeLDMError(f"{where}: {key} must be {getattr(parse, '__name__', 'a value')}, got {value!r}") from None
    choices = meta.choice_list()
    if choices and converted not in choices:
        raise EdgeLDMError(f"{where}: {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return converted


def exclusive_with(cls, name: str) -> list[str]:
    """The fields that exclude ``name`` (its group's other members)."""
    groups = {f.name: meta.group for f, meta in described_fields(cls)}
    group = groups.get(name)
    return [n for n, g in groups.items() if group and g == group and n != name]


def build(cls, options: dict):
    """An options instance from checked recipe values (lists become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


def resolve(cls, options, overrides: dict):
    """The Python API's rule: an options instance (default: ``cls()``) with keyword ``overrides`` applied."""
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(options).__name__}")
    if not overrides:
        return options
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise TypeError(f"{cls.__name__} has no option {unknown[0]!r}; " + choices_hint(unknown[0], sorted(names)))
    # a keyword replaces its rivals of the same exclusive group, as on the command line (both given: an error later)
    rivals = {o: None for k in overrides for o in exclusive_with(cls, k) if o not in overrides}
    overrides = {**rivals, **overrides}
    return dataclasses.replace(options, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


def check_exclusive(options) -> None:
    """At most one field of each exclusive group is set."""
    seen: dict[str, str] = {}
    for f, meta in described_fields(type(options)):
        if meta.group and getattr(options, f.name) is not None:
            if meta.group in seen:
                raise EdgeLDMError(f"{flag(seen[meta.group])} and {flag(f.name)} exclude each other")
            seen[meta.group] = f.name


def check_positive(options, *names: str) -> None:
    """Each named field of ``options`` is None or > 0."""
    check_positive_values(**{name: getattr(options, name) for name in names})


def check_positive_values(**values) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise EdgeLDMError(f"{flag(name)} must be positive, got {value}")


def to_config(config_cls, options, **overrides):
    """The algorithm's config dataclass from a stage's options: every field both share by name, then
    ``overrides`` (renamed or derived fields). Fields the options do not offer keep the config's defaults."""
    shared = {f.name: getattr(options, f.name) for f in dataclasses.fields(config_cls) if hasattr(options, f.name)}
    return config_cls(**{**shared, **overrides})

"""Typed YAML configs: dataclasses in, precise errors out.

Every config file is loaded with ``yaml.safe_load`` into a tree of dataclasses. Unknown
keys, wrong types and bad ``--set`` overrides are :class:`ConfigError`s naming the key
and where its value came from (the file, or the ``--set`` that gave it; :class:`Sources`),
so a typo never silently falls back to a default. An unknown key is answered with the
keys it may have meant: a close name in its own section (or close to a field's other
spellings, :data:`ALIASES`), or the same name in another (``train.learning_rate`` ->
``optimizer.learning_rate``). An override may step into a list entry: ``heads[2].weight=0.5``
(the value checked like the file's).

Usage::

    @dataclasses.dataclass
    class TrainSection:
        epochs: int = 60

    @dataclasses.dataclass
    class Experiment:
        train: TrainSection = dataclasses.field(default_factory=TrainSection)

    cfg = load_config("configs/x.yaml", Experiment, overrides=["train.epochs=3"])

Hostile or careless files are refused cheaply: a value shown in an error is a bounded
excerpt (:func:`excerpt`), aliases that would expand to more than :data:`MAX_NODES`
values ("billion laughs") or refer to themselves are refused, and a float must be finite
(``.nan``/``.inf`` are errors naming the key). Numbers are read as a user means them:
``1e6`` is the float 1000000.0 (YAML 1.1 would read it as the string "1e6"), in files and
in ``--set`` overrides alike; a quoted ``"1e6"`` stays a string.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
from typing import Any, Sequence, TypeVar

import yaml

from tfdldl.config_sources import Sources, excerpt, override_name

__all__ = ["ALIASES", "MAX_MESSAGE", "MAX_NODES", "ConfigError", "Sources", "excerpt",
           "from_dict", "load_config", "override_name", "parse_yaml", "save_config",
           "to_dict"]

T = TypeVar("T")

# The most values (mappings, lists, scalars) a config may hold once its aliases are expanded.
MAX_NODES = 100_000
# The longest excerpt of a YAML parser message quoted in an error.
MAX_MESSAGE = 500
# The dataclass field metadata key of the other spellings users write for a field (a
# tuple, e.g. ("classes", "labels") for names): an unknown key close to one is answered
# "did you mean <the field>?".
ALIASES = "aliases"


class ConfigError(ValueError):
    """A config file or override that does not fit its schema.

    ``problems`` holds every problem found (each names its file or override, the key, what
    is wrong and what would do); the message is the one problem, or all of them, one a line.
    """

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = (f"{len(self.problems)} problems in the config (fix them all):\n"
                       + "\n".join(f"  {problem}" for problem in self.problems))
        super().__init__(message)


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent floats without a dot (``1e6``, ``2E-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))

@dataclasses.dataclass(frozen=True)
class _Where:
    """What problems are labelled with while a config is read: the sources of its values
    and every field name of the whole schema with its dotted keys (for "did you mean")."""

    sources: Sources
    keys: dict[str, list[str]]

    @classmethod
    def for_schema(cls, sources: Sources, schema: type, prefix: str) -> "_Where":
        keys: dict[str, list[str]] = {}

        def walk(section: type, at: str) -> None:
            for name, hint in typing.get_type_hints(section).items():
                keys.setdefault(name, []).append(_join(at, name))
                if dataclasses.is_dataclass(hint):
                    walk(hint, _join(at, name))

        walk(schema, prefix)
        return cls(sources, keys)


def parse_yaml(text: Any, source: str) -> Any:
    """``text`` (a string or an open file) read as YAML with the rules above.

    Raises:
      ConfigError: invalid YAML, an alias that refers to itself, or more than
        :data:`MAX_NODES` values after expanding aliases.
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        message = str(error)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ..."
        raise ConfigError(f"{source} is not valid YAML: {message}") from None
    _check_size(data, source)
    return data


def _check_size(data: Any, source: str) -> None:
    """Refuse self-referencing data and data whose aliases expand beyond MAX_NODES."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: an alias refers to a value that contains it "
                              "(a recursive YAML anchor); write the value out")
        active.add(key)
        children = (list(value.keys()) + list(value.values()) if isinstance(value, dict)
                    else value)
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise ConfigError(
                    f"{source}: the YAML expands to more than {MAX_NODES:,} values once its "
                    "aliases (*name) are resolved; a config is far smaller, remove the "
                    "nested aliases")
        active.discard(key)
        sizes[key] = total
        return total

    size(data)


def load_config(path: str | os.PathLike, schema: type[T], overrides: Sequence[str] = (),
                problems: list[str] | None = None) -> T:
    """Read a YAML file into ``schema`` (a dataclass), then apply ``key.sub=value`` overrides.

    Args:
      path: the YAML file.
      schema: the dataclass type of the whole config.
      overrides: strings ``dotted.key=value``; the value is parsed as YAML
        (``3`` is an int, ``[1, 2]`` a list, ``null`` None); a part ``key[i]`` is entry i
        of the list at ``key`` (``heads[2].weight=0.5``).
      problems: where to append the problems found (a bad value is left at its default, so
        that further checks can run on the rest); None: they are raised together.
    Returns:
      An instance of ``schema``.
    Raises:
      ConfigError: an unreadable file (at once: nothing else can be checked); unknown keys,
        wrong types and malformed overrides, all of them in one error (unless ``problems``).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = parse_yaml(handle, f"config file {path}")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    from tfdldl.config_overrides import apply_override

    found: list[str] = []
    for override in overrides:
        try:
            apply_override(data, override)
        except ConfigError as error:
            found.extend(error.problems)
    where = _Where.for_schema(Sources(path, overrides), schema, "")
    return _result(_build(schema, data, where, "", found), found, problems)


def from_dict(schema: type[T], data: Any, source: str = "<dict>", prefix: str = "",
              problems: list[str] | None = None) -> T:
    """Convert nested dicts into ``schema`` (its keys below ``prefix``); errors name
    ``source`` and the dotted key.

    Every unknown key and bad value is found; with ``problems`` (a list) they are appended
    to it and each bad value is left at its default, else they are raised together as one
    ConfigError.
    """
    found: list[str] = []
    where = _Where.for_schema(Sources(source), schema, prefix)
    return _result(_build(schema, data, where, prefix, found), found, problems)


def _result(config: T, found: list[str], problems: list[str] | None) -> T:
    """``config``, with ``found`` appended to ``problems``, or raised when that is None."""
    if problems is not None:
        problems.extend(found)
    elif found:
        raise ConfigError(found)
    return config


def _build(schema: type[T], data: Any, where: _Where, prefix: str, found: list[str]) -> T:
    """``schema`` from the dict ``data``; the problems of its keys (and of nested sections)
    are appended to ``found``, their values left at the defaults.

    Raises:
      ConfigError: ``data`` is no mapping, or the dataclass refuses the values.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where.sources.of(prefix)}: '{prefix or '<top>'}' must be a mapping, got "
            f"{type(data).__name__}"
        )
    fields = {field.name: field for field in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    values = {}
    for key, value in data.items():
        if key not in fields:
            found.append(_unknown_key(key, prefix, list(fields.values()), where))
            continue
        try:
            values[key] = _convert(hints[key], value, where, _join(prefix, key), found)
        except ConfigError as error:
            found.extend(error.problems)
    try:
        return schema(**values)
    except (TypeError, ValueError) as error:
        message = str(error)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ..."
        raise ConfigError(f"{where.sources.of(prefix)}: section '{prefix or '<top>'}': "
                          f"{message}") from None


def _unknown_key(key: Any, prefix: str, fields: list[dataclasses.Field], where: _Where) -> str:
    """The problem of an unknown ``key`` in the section at ``prefix`` (whose keys are
    ``fields``), with up to 3 keys it may have meant: a close name in this section (or
    close to one of a field's other spellings, its ``metadata[ALIASES]``), the same name
    in other sections, else a close name in other sections."""
    name, dotted = str(key)[:100], _join(prefix, key)
    spellings = {alias: field.name for field in fields
                 for alias in (field.name, *field.metadata.get(ALIASES, ()))}
    meant = [_join(prefix, spellings[close])
             for close in difflib.get_close_matches(name, spellings, n=1)]
    meant += where.keys.get(name, [])
    if not meant:
        meant = [other for close in difflib.get_close_matches(name, where.keys, n=1)
                 for other in where.keys[close]]
    shown = [f"'{option}'" for option in meant[:3]]
    hint = (f"; did you mean {', '.join(shown[:-1])} or {shown[-1]}?" if len(shown) > 1
            else f"; did you mean {shown[0]}?" if shown else "")
    return (f"{where.sources.of(dotted)}: unknown key {excerpt(dotted)}{hint} "
            f"(allowed here: {', '.join(sorted(field.name for field in fields))})")


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form of a config dataclass (for YAML/JSON)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (or JSON if ``path`` ends in .json), atomically
    and never through a symbolic link (tfdldl.safe_io)."""
    from tfdldl.safe_io import atomic_file

    data = to_dict(config)
    with atomic_file(path) as handle:
        if os.fspath(path).endswith(".json"):
            json.dump(data, handle, indent=2)
        else:
            yaml.safe_dump(data, handle, sort_keys=False)


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _convert(hint: Any, value: Any, where: _Where, key: str, found: list[str]) -> Any:
    """``value`` as type ``hint``. A nested section's problems go to ``found`` (the section
    is kept, those values at their defaults).

    Raises:
      ConfigError: a value (or, for lists and unions, a part of it) of the wrong type.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            attempt = _strictly(option, value, where, key)
            if not isinstance(attempt, ConfigError):
                return attempt
            errors.append(attempt.problems)
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, key, found)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(
                f"{where.sources.of(key)}: '{key}' must be one of "
                f"{', '.join(map(repr, args))}, got {excerpt(value)}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where.sources.of(key)}: '{key}' must be a list, got "
                              f"{excerpt(value)}")
        item = args[0] if args else Any
        items = [_strictly(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        problems = [problem for entry in items if isinstance(entry, ConfigError)
                    for problem in entry.problems]
        if problems:  # every bad entry is named; the list is left at its default
            raise ConfigError(problems)
        return items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where.sources.of(key)}: '{key}' must be a mapping, got "
                              f"{excerpt(value)}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (int, float, str, bool):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            if hint is float and not math.isfinite(value):
                raise ConfigError(f"{where.sources.of(key)}: '{key}' must be a finite number, "
                                  f"got {value!r}")
            return value
        raise ConfigError(_wrong_type(hint, value, where, key))
    return value


def _wrong_type(hint: type, value: Any, where: _Where, key: str) -> str:
    """The problem of ``value`` at ``key`` not being a ``hint``; for a str given nothing
    (``into_label:`` in the file, ``--set model.into_label=``), how to give an empty string
    where it came from (``into_label: ''``, ``--set "model.into_label=''"``)."""
    source = where.sources.of(key)
    if hint is not str or value is not None:
        return (f"{source}: '{key}' must be {hint.__name__}, got {excerpt(value)} "
                f"({type(value).__name__})")
    leaf = key.rsplit(".", 1)[-1]
    empty = (f'--set "{key}=\'\'"' if source != str(where.sources)
             else "''" if "[" in leaf else f"{leaf}: ''")
    return (f"{source}: '{key}' must be str, got nothing (null); give an empty string "
            f"quoted: {empty}")


def _strictly(hint: Any, value: Any, where: _Where, key: str) -> Any:
    """``value`` as type ``hint``, or the ConfigError holding all its problems (a nested
    section's too): a list entry or union option is taken whole or not at all."""
    found: list[str] = []
    try:
        converted = _convert(hint, value, where, key, found)
    except ConfigError as error:
        return ConfigError(found + error.problems)
    return ConfigError(found) if found else converted

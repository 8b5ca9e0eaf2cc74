"""Typed YAML configs: dataclasses in, precise errors out.

Every config file is loaded with ``yaml.safe_load`` into a tree of dataclasses. Unknown
keys, wrong types and bad ``--set`` overrides are :class:`ConfigError`s naming the key
and the file, so a typo never silently falls back to a default.

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
import reprlib
import types
import typing
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")

# The most values (mappings, lists, scalars) a config may hold once its aliases are expanded.
MAX_NODES = 100_000
# The longest excerpt of a YAML parser message quoted in an error.
MAX_MESSAGE = 500


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent floats without a dot (``1e6``, ``2E-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))

_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = 60
_EXCERPT.maxlist = _EXCERPT.maxtuple = _EXCERPT.maxdict = _EXCERPT.maxset = 4
_EXCERPT.maxlevel = 2
EXCERPT_CHARS = 100


def excerpt(value: Any) -> str:
    """A ``repr`` of ``value`` of at most about EXCERPT_CHARS characters (long strings and
    lists elided with ``...``), for error messages about values of any size."""
    text = _EXCERPT.repr(value)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


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


def load_config(path: str | os.PathLike, schema: type[T], overrides: Sequence[str] = ()) -> T:
    """Read a YAML file into ``schema`` (a dataclass), then apply ``key.sub=value`` overrides.

    Args:
      path: the YAML file.
      schema: the dataclass type of the whole config.
      overrides: strings ``dotted.key=value``; the value is parsed as YAML
        (``3`` is an int, ``[1, 2]`` a list, ``null`` None).
    Returns:
      An instance of ``schema``.
    Raises:
      ConfigError: unreadable file, unknown key, wrong type or malformed override.
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
    for override in overrides:
        _apply_override(data, override)
    return from_dict(schema, data, source=path)


def from_dict(schema: type[T], data: Any, source: str = "<dict>", prefix: str = "") -> T:
    """Convert nested dicts into ``schema``; errors name ``source`` and the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: '{prefix or '<top>'}' must be a mapping, got {type(data).__name__}"
        )
    fields = {field.name: field for field in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key)[:100], fields, n=1)
        hint = f"; did you mean '{_join(prefix, close[0])}'?" if close else ""
        raise ConfigError(
            f"{source}: unknown key {excerpt(_join(prefix, key))}{hint} "
            f"(allowed here: {', '.join(sorted(fields))})"
        )
    values = {}
    for key, value in data.items():
        values[key] = _convert(hints[key], value, source, _join(prefix, key))
    try:
        return schema(**values)
    except (TypeError, ValueError) as error:
        message = str(error)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ..."
        raise ConfigError(f"{source}: section '{prefix or '<top>'}': {message}") from None


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


def _convert(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source, key)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(
                f"{source}: '{key}' must be one of {', '.join(map(repr, args))}, got "
                f"{excerpt(value)}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {excerpt(value)}")
        item = args[0] if args else Any
        return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {excerpt(value)}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (int, float, str, bool):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            if hint is float and not math.isfinite(value):
                raise ConfigError(f"{source}: '{key}' must be a finite number, got {value!r}")
            return value
        raise ConfigError(
            f"{source}: '{key}' must be {hint.__name__}, got {excerpt(value)} "
            f"({type(value).__name__})"
        )
    return value


def _apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {excerpt(override)} must look like section.key=value")
    dotted, raw = override.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{override}' has an empty key part")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{override}': '{part}' is not a section")
        node = child
    node[parts[-1]] = parse_yaml(raw, f"override {excerpt(override)}: the value")

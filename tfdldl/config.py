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
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


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
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
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
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"; did you mean '{_join(prefix, close[0])}'?" if close else ""
        raise ConfigError(
            f"{source}: unknown key '{_join(prefix, key)}'{hint} "
            f"(allowed here: {', '.join(sorted(fields))})"
        )
    values = {}
    for key, value in data.items():
        values[key] = _convert(hints[key], value, source, _join(prefix, key))
    try:
        return schema(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: section '{prefix or '<top>'}': {error}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form of a config dataclass (for YAML/JSON)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (or JSON if ``path`` ends in .json)."""
    data = to_dict(config)
    with open(path, "w", encoding="utf-8") as handle:
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
                f"{source}: '{key}' must be one of {', '.join(map(repr, args))}, got {value!r}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        item = args[0] if args else Any
        return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise ConfigError(
            f"{source}: '{key}' must be {hint.__name__}, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def _apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override '{override}' must look like section.key=value")
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
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"override '{override}': value is not valid YAML: {error}") from None

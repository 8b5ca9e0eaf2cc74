"""``--set dotted.key=value`` overrides applied to a config's parsed YAML (tfdldl.config's
load_config), before the schema checks every value as if the file held it.

A part ``key[i]`` steps into entry i of the list at ``key``: ``heads[2].weight=0.5`` sets
one heads entry's weight, ``splits.ratios[0]=0.7`` one share; a list is never grown (give
the whole list: ``--set 'heads=[...]'``).
"""

from __future__ import annotations

import re
from typing import Any

from tfdldl.config import ConfigError, parse_yaml
from tfdldl.config_sources import excerpt, override_name


def apply_override(data: dict, override: str) -> None:
    """Set ``dotted.key=value`` in ``data``; a part ``key[i]`` steps into entry i of the list
    at ``key`` (``heads[2].weight=0.5``). Every mapping on the way is copied, so an entry
    that a YAML alias shares with another is changed only where the override points.

    Raises:
      ConfigError: no '=', an empty key part, a bad index, or a path through a value that
        is no section (or no list, or too short a list).
    """
    name = override_name(override)
    if "=" not in override:
        raise ConfigError(f"{name} must look like section.key=value")
    dotted, raw = override.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{name} has an empty key part")
    node = data
    for part in parts[:-1]:
        node, key = _indexed(node, part, name)
        child = node.get(key, {}) if isinstance(node, dict) else node[key]
        if not isinstance(child, dict):
            raise ConfigError(f"{name}: '{part}' is not a section")
        node[key] = child = dict(child)
        node = child
    node, key = _indexed(node, parts[-1], name)
    node[key] = parse_yaml(raw, f"{name}: the value")


def _indexed(node: dict, part: str, name: str) -> tuple[Any, Any]:
    """The container and key that the override part ``part`` names in the mapping ``node``:
    (node, part), or for ``key[i]`` (the list at ``key`` copied into ``node``, i).

    Raises:
      ConfigError: a malformed index, or no list at ``key`` with an entry i.
    """
    if "[" not in part and "]" not in part:
        return node, part
    match = re.fullmatch(r"([^\[\]]+)\[([0-9]+)\]", part)
    if not match:
        raise ConfigError(f"{name} has a bad index in {excerpt(part)}: write key[i] with "
                          "i = 0, 1, ...")
    key, index = match.group(1), int(match.group(2))
    entries = node.get(key)
    if not isinstance(entries, list):
        raise ConfigError(f"{name}: '{key}' is no list here (it is given by the file or an "
                          f"earlier --set), so it has no entry [{index}]; give the whole "
                          f"list: --set '{key}=[...]'")
    if index >= len(entries):
        held = f" ({key}[0] to {key}[{len(entries) - 1}])" if entries else ""
        raise ConfigError(f"{name}: '{key}' holds {len(entries)} entries{held}, so there is "
                          f"no {key}[{index}]; set one of them, or give the whole list: "
                          f"--set '{key}=[...]'")
    node[key] = list(entries)
    return node[key], index

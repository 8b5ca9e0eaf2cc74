"""Where a config's values came from, and how problems quote them.

:class:`Sources` names the file or the ``--set`` override behind each dotted key, so a bad
value given on the command line is not blamed on the file; :func:`excerpt` bounds any
value shown in an error; :func:`override_name` is how a problem names an override.
Used by :mod:`tfdldl.config` (which re-exports all three) and the experiment checks.
"""

from __future__ import annotations

import reprlib
from typing import Any, Sequence

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


def override_name(override: str) -> str:
    """How a problem names a ``dotted.key=value`` override: ``--set 'train.epochs=ten'``
    (the commands' flag; a bounded excerpt of the text)."""
    return f"--set {excerpt(override)}"


class Sources:
    """Where a config's values came from: its file, or the ``--set`` overrides applied on top.

    Problems are labelled with :meth:`of` their dotted key, so a bad value given on the
    command line is not blamed on the file. ``str()`` is the file (for problems that name
    no key).
    """

    def __init__(self, path: str, overrides: Sequence[str] = ()):
        self.path = path
        self._overrides = [(text.split("=", 1)[0].strip(), text)
                           for text in overrides if "=" in text]

    def of(self, key: str) -> str:
        """The last override that set ``key`` (or a section or list holding it, e.g.
        ``train={epochs: 3}`` for ``train.epochs``), as :func:`override_name` names it;
        else the file."""
        for dotted, text in reversed(self._overrides):
            if key == dotted or key.startswith((dotted + ".", dotted + "[")):
                return override_name(text)
        return self.path

    def __str__(self) -> str:
        return self.path

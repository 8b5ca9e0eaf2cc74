"""JSON files written atomically: under a temporary name, renamed when complete.

A reader (or a resumed job) therefore sees either the previous file or the whole new
one, never a half-written file; and a symbolic link planted at the file's name is
replaced, never written through (tfdldl.safe_io).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from tfdldl.safe_io import atomic_file


def write_json(path: str | os.PathLike, data: Any, indent: Optional[int] = 2) -> str:
    """Write ``data`` as JSON to ``path`` via a fresh temporary file and an atomic rename.

    NumPy arrays and scalars become lists and numbers, dataclasses dicts.

    Returns:
      ``path`` as a string.
    """
    path = os.fspath(path)
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=indent, default=_jsonable)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

"""Small parsing helpers shared by the dataset adapters.

Every adapter turns one input (a file name, a label-file line, a JSON entry) into either a
:class:`~data_prep.adapters.base.Record` or a :class:`~data_prep.adapters.base.Skip`; these
helpers keep the checks and the wording of the skip details the same everywhere.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Iterable, Iterator, Optional, Union

from data_prep.adapters.base import UNKNOWN_GENDER, Record, Skip
from tfdldl.config import ConfigError
from tfdldl.image_io import IMAGE_EXTENSIONS

_FEMALE = {"1", "f", "female", "w", "woman"}
_MALE = {"0", "m", "male", "man"}
_UNKNOWN = {"", "-1", "u", "unknown", "?", "none"}
FLOAT32_MAX = 3.4028234663852886e38


class AdapterError(ConfigError):
    """Adapter options or a label file that cannot be used at all (not one bad entry)."""


class ParseError(ValueError):
    """One field of one input that cannot be read; the message is a skip's detail."""


def require_dir(path: str, option: str, adapter: str) -> str:
    """The absolute form of ``path``; FileNotFoundError naming the option when it is no folder."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{adapter}: {option}={path!r} is not an existing folder")
    return os.path.abspath(path)


def require_file(path: str, option: str, adapter: str) -> str:
    """The absolute form of ``path``; FileNotFoundError naming the option when it is no file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{adapter}: {option}={path!r} is not an existing file")
    return os.path.abspath(path)


def is_image_name(name: str) -> bool:
    """True when ``name`` ends in an image extension (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def parse_number(text: Union[str, int, float, None], field: str) -> float:
    """``text`` as a finite float; ParseError saying which field held what otherwise."""
    if isinstance(text, bool) or text is None:
        raise ParseError(f"{field} is {text!r}, not a number")
    try:
        value = float(text.strip() if isinstance(text, str) else text)
    except (TypeError, ValueError, OverflowError):
        raise ParseError(f"{field} is {str(text)[:40]!r}, not a number") from None
    if not math.isfinite(value):
        raise ParseError(f"{field} is {str(text)[:40]!r}, not a finite number")
    if abs(value) > FLOAT32_MAX:
        raise ParseError(f"{field} is {value:g}, beyond the float32 range the TFRecords "
                         f"store (|x| <= {FLOAT32_MAX:.3g})")
    return value


def is_number(text: str) -> bool:
    """True when ``text`` parses as a finite number."""
    try:
        parse_number(text, "")
    except ParseError:
        return False
    return True


def parse_sigma(text: Union[str, int, float, None], field: str) -> Optional[float]:
    """A σ (label units, >= 0), or None for an empty field; ParseError for anything else."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    value = parse_number(text, field)
    if value < 0:
        raise ParseError(f"{field} is {value:g}; a standard deviation cannot be negative")
    return value


def parse_gender(text: Union[str, int, None], field: str) -> int:
    """0 male, 1 female, -1 unknown from the usual spellings (0/1, M/F, male/female, U)."""
    key = "" if text is None else str(text).strip().lower()
    if key in _MALE:
        return 0
    if key in _FEMALE:
        return 1
    if key in _UNKNOWN:
        return UNKNOWN_GENDER
    raise ParseError(f"{field} is {text!r}; use 0/1, M/F, male/female or leave it empty")


def missing_file(path: str, where: str) -> Skip:
    """The skip of an image that a label file lists but that is not on disk."""
    return Skip(path, "missing_file",
                f"listed at {where} but not found on disk; fix the path or the images root")


def once_per_path(items: Iterable[Union[Record, Skip]]) -> Iterator[Union[Record, Skip]]:
    """``items`` with a repeated Record path turned into a ``duplicate_entry`` Skip.

    A label file that lists one image twice would otherwise give it two (possibly
    different) labels and two places in the splits; the first listing wins.
    """
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Record):
            if item.path in seen:
                item = Skip(item.path, "duplicate_entry", "listed more than once in the "
                            "label file; only its first entry is used")
            else:
                seen.add(item.path)
        yield item


def resolve(root: str, relative: str, where: str) -> Union[str, Skip]:
    """``relative`` joined to ``root`` and normalised, when it stays inside ``root``.

    A label file names images of its dataset: an absolute path or a ``..`` that leads out
    of ``root`` (``/etc/passwd``, ``../../home/x.jpg``) is refused with an
    ``outside_root`` Skip (``where`` says which line), so no file elsewhere is read and
    the records' common root stays the dataset's. An absolute path inside ``root`` is
    accepted.
    """
    root = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(os.path.join(root, relative))
    if os.path.commonpath([root, path]) != root:
        return Skip(f"{where}", "outside_root",
                    f"path {relative[:200]!r} lies outside the dataset root {root}; label "
                    "files may only name images inside it (use a path relative to the "
                    "root, or set the adapter's root option)")
    return path


def read_rows(path: str, adapter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-blank row of a CSV file.

    The delimiter is ``;`` when the first line has semicolons and no commas, else ``,``.
    Raises AdapterError for a file that is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
            delimiter = ";" if ";" in first and "," not in first else ","
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter)
            for cells in reader:
                cells = [cell.strip() for cell in cells]
                if any(cells):
                    yield reader.line_num, cells
    except UnicodeDecodeError as error:
        raise AdapterError(f"{adapter}: {path} is not UTF-8 text ({error}); is it really "
                           "the CSV label file?") from None
    except csv.Error as error:
        raise AdapterError(f"{adapter}: {path} is not a readable CSV file: {error}") from None

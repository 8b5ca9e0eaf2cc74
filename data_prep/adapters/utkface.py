"""UTKFace: the label is in the file name, ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg``.

AGE is in years, GENDER 0 male / 1 female, RACE 0..4 (not a label: it becomes the record's
``group``, named by the data config, for evaluation slices), DATETIME the
capture time as digits (usually 17; the release also has 16- and 18-digit ones, which are
kept: the label fields are intact). UTKFace has no subject ids, so every record's subject is
"" and splits can only group its duplicates.

The release has malformed names (a missing field, a stray space, a missing dot, e.g.
``39_1_20170116174525125.jpg.chip.jpg``); they become ``Skip(reason="malformed_name")``
with what is wrong, never a guessed label. Files that are not images are
``not_an_image`` skips.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterator, Union

from data_prep.adapters.base import Record, Skip
from data_prep.adapters.common import is_image_name, require_dir

SUFFIX = ".jpg.chip.jpg"
_NAME = re.compile(r"^(\d+)_([01])_([0-4])_(\d+)" + re.escape(SUFFIX) + r"$")


@dataclasses.dataclass(frozen=True)
class UTKFace:
    """Reads a folder of UTKFace crops (``root``), in sorted file-name order.

    Attributes:
      root: the folder holding the ``*.jpg.chip.jpg`` files directly.
    """

    root: str

    def __post_init__(self):
        require_dir(self.root, "root", "utkface")

    def records(self) -> Iterator[Union[Record, Skip]]:
        """A Record per well-named image; a Skip per malformed name, folder or non-image."""
        root = os.path.abspath(self.root)
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                yield Skip(path, "not_an_image", "is a folder; UTKFace images lie directly "
                           "in the root folder (subfolders are not read)")
            elif not is_image_name(name):
                yield Skip(path, "not_an_image", "not an image file name (expected "
                           f"AGE_GENDER_RACE_DATETIME{SUFFIX})")
            else:
                yield parse_name(path)


def parse_name(path: str) -> Union[Record, Skip]:
    """The Record a UTKFace file name encodes, or a malformed_name Skip saying why not."""
    name = os.path.basename(path)
    match = _NAME.match(name)
    if match is None:
        return Skip(path, "malformed_name", _diagnose(name))
    age, gender, race = match.group(1), match.group(2), match.group(3)
    return Record(path=path, label=float(int(age)), gender=int(gender), group=int(race))


def _diagnose(name: str) -> str:
    """Why ``name`` is not AGE_GENDER_RACE_DATETIME.jpg.chip.jpg, in one sentence."""
    expected = f"expected AGE_GENDER_RACE_DATETIME{SUFFIX}"
    if " " in name:
        return f"name {name!r} contains a space; {expected}"
    if not name.endswith(SUFFIX):
        return f"name {name!r} does not end in {SUFFIX!r} (a missing dot?); {expected}"
    fields = name[: -len(SUFFIX)].split("_")
    if len(fields) != 4:
        return (f"name {name!r} has {len(fields)} underscore-separated fields, not 4 "
                f"(a field is missing or extra); {expected}")
    age, gender, race, stamp = fields
    if not age.isdigit():
        return f"age field {age!r} of {name!r} is not a whole number; {expected}"
    if gender not in ("0", "1"):
        return f"gender field {gender!r} of {name!r} is not 0 (male) or 1 (female)"
    if race not in ("0", "1", "2", "3", "4"):
        return f"race field {race!r} of {name!r} is not one of 0..4"
    return f"date-time field {stamp!r} of {name!r} is not all digits; {expected}"

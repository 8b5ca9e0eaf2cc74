"""FG-NET: ``SSSAYY[x].JPG`` names, e.g. ``001A02.JPG`` is subject 001 at age 2.

SSS is the subject (82 people, 001..082), YY the age in years, and an optional letter
(``001A43a.JPG``, ``001A43b.JPG``) tells apart photos of one subject at the same age. Case
of letters and extension does not matter. Records carry the subject, so splits keep every
person in one split. FG-NET has no gender in its names (gender stays -1).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterator, Union

from data_prep.adapters.base import Record, Skip
from data_prep.adapters.common import is_image_name, require_dir

_NAME = re.compile(r"^(\d{3})A(\d{2,3})([A-Z]?)\.(JPG|JPEG|PNG)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class FGNet:
    """Reads a folder of FG-NET images (``root``), in sorted file-name order.

    Attributes:
      root: the folder holding the ``SSSAYY.JPG`` files directly.
    """

    root: str

    def __post_init__(self):
        require_dir(self.root, "root", "fgnet")

    def records(self) -> Iterator[Union[Record, Skip]]:
        """A Record per well-named image; a Skip per malformed name, folder or non-image."""
        root = os.path.abspath(self.root)
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if os.path.isdir(path) or not is_image_name(name):
                yield Skip(path, "not_an_image", "not an image file (FG-NET images are "
                           "named SSSAYY.JPG, e.g. 001A02.JPG)")
                continue
            match = _NAME.match(name)
            if match is None:
                yield Skip(path, "malformed_name", f"name {name!r} is not SUBJECT(3 digits) "
                           "'A' AGE(2 digits) [letter] .JPG, e.g. 001A02.JPG or 001A43a.JPG")
                continue
            subject, age = match.group(1), match.group(2)
            yield Record(path=path, label=float(int(age)), subject=subject)

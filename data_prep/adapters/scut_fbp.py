"""SCUT-FBP5500 facial beauty: ``NAME SCORE`` lines and the release's 5-fold split.

Each line of a split file is an image name and its mean attractiveness rating (1..5, the
``SCUT_FBP5500`` label space), separated by white space::

    mty152.jpg 4.316667

Fold K (1..5) is read from ``labels`` in either layout:
  ``split_K/train.txt`` + ``split_K/test.txt``  (the layout of ../shared/datasets), or
  ``cross_validation_K/train_K.txt`` + ``test_K.txt``  (the release's
  ``5_folders_cross_validations_files``).
Records carry ``split`` = "train" / "test" for ``splits.method: predefined`` (no val).
Gender comes from the name's first letter: ``f``/``m`` (``fty12.jpg``) or the release's
``AF``/``AM``/``CF``/``CM`` prefixes; anything else is -1. There are no subject ids.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterator, Union

from data_prep.adapters.base import UNKNOWN_GENDER, Record, Skip
from data_prep.adapters.common import (AdapterError, ParseError, missing_file, once_per_path,
                                       parse_number, require_dir, resolve)

FOLDS = 5
_GENDER = re.compile(r"^(?:([fm])t[wy]|[AC]([FM]))\d", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ScutFbp5500:
    """Reads one fold of SCUT-FBP5500's 5-fold split.

    Attributes:
      labels: the folder holding ``split_K/`` (or ``cross_validation_K/``) folders.
      root: the images folder (the release's ``Images/``); "" means ``labels``.
      fold: which fold, 1..5.
      check_files: skip lines whose image is not on disk (``missing_file``); False reads
        the labels alone.
    """

    labels: str
    root: str = ""
    fold: int = 1
    check_files: bool = True

    def __post_init__(self):
        require_dir(self.labels, "labels", "scut_fbp5500")
        if self.root:
            require_dir(self.root, "root", "scut_fbp5500")
        if not 1 <= self.fold <= FOLDS:
            raise AdapterError(f"scut_fbp5500: fold={self.fold}; SCUT-FBP5500 has folds "
                               f"1..{FOLDS}")

    def split_files(self) -> dict[str, str]:
        """{"train": path, "test": path} of this fold; FileNotFoundError naming what was tried."""
        labels, k = os.path.abspath(self.labels), self.fold
        layouts = [
            {"train": os.path.join(labels, f"split_{k}", "train.txt"),
             "test": os.path.join(labels, f"split_{k}", "test.txt")},
            {"train": os.path.join(labels, f"cross_validation_{k}", f"train_{k}.txt"),
             "test": os.path.join(labels, f"cross_validation_{k}", f"test_{k}.txt")},
        ]
        for files in layouts:
            if all(os.path.isfile(path) for path in files.values()):
                return files
        tried = "; ".join(" + ".join(files.values()) for files in layouts)
        raise FileNotFoundError(f"scut_fbp5500: fold {k} split files not found (tried {tried})")

    def records(self) -> Iterator[Union[Record, Skip]]:
        """The fold's train lines then its test lines, each in file order."""
        root = os.path.abspath(self.root or self.labels)
        items = (item for split, path in self.split_files().items()
                 for item in self._read(path, split, root))
        yield from once_per_path(items)

    def _read(self, path: str, split: str, root: str) -> Iterator[Union[Record, Skip]]:
        with open(path, encoding="utf-8") as handle:
            for line, text in enumerate(handle, start=1):
                fields, where = text.split(), f"{path}:{line}"
                if not fields:
                    continue
                if len(fields) != 2:
                    yield Skip(where, "malformed_line",
                               f"{len(fields)} fields, expected 'NAME SCORE': {text.strip()!r}")
                    continue
                image = resolve(root, fields[0], where)
                if isinstance(image, Skip):
                    yield image
                    continue
                try:
                    score = parse_number(fields[1], "score")
                except ParseError as error:
                    yield Skip(image, "bad_label", f"{where}: {error}")
                    continue
                if self.check_files and not os.path.isfile(image):
                    yield missing_file(image, where)
                    continue
                yield Record(path=image, label=score, gender=gender_of(fields[0]), split=split)


def gender_of(name: str) -> int:
    """0 male / 1 female from a SCUT-FBP5500 image name, -1 when the name does not say."""
    match = _GENDER.match(name)
    if match is None:
        return UNKNOWN_GENDER
    letter = (match.group(1) or match.group(2)).lower()
    return 1 if letter == "f" else 0

"""Database JSON files of the Facial Age Estimation Benchmark (Paplham et al.).

A database file is a JSON list of entries such as::

    {"img_path": "AgeDB/AgeDB/12083_ElsaMartinelli_74_f.jpg", "name": "ElsaMartinelli",
     "age": 74, "gender": "F", "database": "AgeDB", "folder": 8}

Fields read:
  img_path  image path relative to the images root (``root``).
  age       completed years; -1 means unknown (skipped as ``unknown_label``).
  folder    the benchmark's folder (0..9, or 0/1/2 = train/val/test for CLAP2016 and
            CACD2000; FG-Net's file numbers its 82 subjects 1..82 instead). Kept in
            ``Record.folder`` for ``splits.method: benchmark:<s>`` (see data_prep.splits).
  std_age   optional: the annotators' std of the apparent age (CLAP2016) -> ``sigma``.
  id_num / name  optional subject id (``id_num`` preferred); "" when neither is present.
  gender    optional: "M" / "F" / "U".
Other fields (database, number, aligned_bbox, ...) are ignored. Entries keep the file's order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator, Union

from data_prep.adapters.base import Record, Skip
from data_prep.adapters.common import (AdapterError, ParseError, missing_file, once_per_path,
                                       parse_gender, parse_number, parse_sigma, require_dir,
                                       require_file, resolve)


@dataclasses.dataclass(frozen=True)
class BenchmarkJson:
    """Reads one database JSON file of the benchmark.

    Attributes:
      labels: the JSON file, e.g. ``.../databases/AgeDB.json``.
      root: the folder ``img_path`` is relative to; "" means the JSON file's folder.
      check_files: skip entries whose image is not on disk (``missing_file``); False reads
        the labels alone (to inspect a protocol without the images).
    """

    labels: str
    root: str = ""
    check_files: bool = True

    def __post_init__(self):
        require_file(self.labels, "labels", "benchmark_json")
        if self.root:
            require_dir(self.root, "root", "benchmark_json")

    def records(self) -> Iterator[Union[Record, Skip]]:
        """A Record or a Skip per entry, in the file's order."""
        labels = os.path.abspath(self.labels)
        root = os.path.abspath(self.root) if self.root else os.path.dirname(labels)
        try:
            with open(labels, encoding="utf-8") as handle:
                entries = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise AdapterError(f"benchmark_json: {labels} is not valid JSON: {error}") from None
        if not isinstance(entries, list):
            raise AdapterError(f"benchmark_json: {labels} must hold a JSON list of entries, "
                               f"found a {type(entries).__name__}")
        yield from once_per_path(
            self._entry(entry, f"{labels}:entry {index}", root)
            for index, entry in enumerate(entries))

    def _entry(self, entry: Any, where: str, root: str) -> Union[Record, Skip]:
        if not isinstance(entry, dict):
            return Skip(where, "malformed_line", f"entry is a {type(entry).__name__}, "
                        "not an object with img_path, age, folder")
        absent = [key for key in ("img_path", "age", "folder") if key not in entry]
        if absent:
            return Skip(where, "malformed_line", f"entry lacks {', '.join(absent)}")
        if not isinstance(entry["img_path"], str) or not entry["img_path"].strip():
            return Skip(where, "malformed_line", f"img_path is {entry['img_path']!r}")
        path = resolve(root, entry["img_path"], where)
        if isinstance(path, Skip):
            return path
        try:
            age = parse_number(entry["age"], "age")
        except ParseError as error:
            return Skip(path, "bad_label", f"{where}: {error}")
        if age == -1:
            return Skip(path, "unknown_label", f"{where}: age is -1 (unknown in the benchmark)")
        try:
            folder = _whole_number(entry["folder"], "folder")
            sigma = parse_sigma(entry.get("std_age"), "std_age")
            gender = parse_gender(entry.get("gender"), "gender")
        except ParseError as error:
            return Skip(path, "bad_field", f"{where}: {error}")
        if self.check_files and not os.path.isfile(path):
            return missing_file(path, where)
        subject = next((entry[key] for key in ("id_num", "name")
                        if entry.get(key) not in (None, "")), "")
        return Record(path=path, label=age, sigma=sigma, subject=str(subject),
                      gender=gender, folder=folder)


def _whole_number(value: Any, field: str) -> int:
    number = parse_number(value, field)
    if number != int(number):
        raise ParseError(f"{field} is {value!r}, not a whole number")
    return int(number)

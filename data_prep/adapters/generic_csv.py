"""Any labelled image set as a CSV: ``path,label[,sigma][,subject][,gender]``.

* Without a header the columns are positional, in that order; trailing optional columns
  may be left out (``face.jpg,31``) or empty (``face.jpg,31,,p07,F``).
* With a header (recognised when the first row's label cell is not a number), the column
  names may come in any order and must include ``path`` and ``label``; allowed names are
  path, label, sigma, subject, gender.
* Paths are relative to the CSV file's folder (or ``root`` when given) and must stay
  inside it (an absolute path or ``..`` leading out is an ``outside_root`` skip). ``sigma`` is in label units (empty: the data config's σ); ``gender`` is 0/1, M/F,
  male/female, or empty/-1/U for unknown; ``subject`` is any text (records sharing it
  always land in one split).
* ``;`` works as the delimiter too (when the first line has no comma).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Iterator, Union

from data_prep.adapters.base import Record, Skip
from data_prep.adapters.common import (AdapterError, ParseError, is_image_name, is_number,
                                       missing_file, once_per_path, parse_gender, parse_number,
                                       parse_sigma, read_rows, require_dir, require_file,
                                       resolve)

COLUMNS = ("path", "label", "sigma", "subject", "gender")


@dataclasses.dataclass(frozen=True)
class GenericCsv:
    """Reads a ``path,label[,sigma][,subject][,gender]`` CSV.

    Attributes:
      labels: the CSV file.
      root: the folder relative paths start from; "" means the CSV file's folder.
      check_files: skip rows whose image is not on disk (``missing_file``); False reads
        the labels alone.
    """

    labels: str
    root: str = ""
    check_files: bool = True

    def __post_init__(self):
        require_file(self.labels, "labels", "generic_csv")
        if self.root:
            require_dir(self.root, "root", "generic_csv")

    def records(self) -> Iterator[Union[Record, Skip]]:
        """A Record or a Skip per data row, in the file's order."""
        labels = os.path.abspath(self.labels)
        root = os.path.abspath(self.root) if self.root else os.path.dirname(labels)
        rows = read_rows(labels, "generic_csv")
        first = next(rows, None)
        if first is None:
            raise AdapterError(f"generic_csv: {labels} has no rows")
        order = _header(first[1], labels)
        if order is None:
            order, rows = COLUMNS, itertools.chain([first], rows)
        yield from once_per_path(self._row(cells, f"{labels}:{line}", root, order)
                                 for line, cells in rows)

    def _row(self, cells: list[str], where: str, root: str,
             order: tuple[str, ...]) -> Union[Record, Skip]:
        if len(cells) > len(order) or len(cells) < 2:
            return Skip(where, "malformed_line", f"{len(cells)} columns, expected 2 to "
                        f"{len(order)} ({','.join(order)}): {cells}")
        values = dict(zip(order, cells))
        if not values.get("path"):
            return Skip(where, "malformed_line", "the path column is empty")
        path = resolve(root, values["path"], where)
        if isinstance(path, Skip):
            return path
        try:
            label = parse_number(values.get("label"), "label")
        except ParseError as error:
            return Skip(path, "bad_label", f"{where}: {error}")
        try:
            sigma = parse_sigma(values.get("sigma"), "sigma")
            gender = parse_gender(values.get("gender"), "gender")
        except ParseError as error:
            return Skip(path, "bad_field", f"{where}: {error}")
        if self.check_files and not os.path.isfile(path):
            return missing_file(path, where)
        return Record(path=path, label=label, sigma=sigma, subject=values.get("subject", ""),
                      gender=gender)


def _header(first: list[str], labels: str):
    """The column order a header row names, or None when ``first`` is a data row."""
    looks_like_data = len(first) > 1 and (is_image_name(first[0]) or is_number(first[1]))
    if looks_like_data:
        return None
    names = tuple(cell.lower() for cell in first)
    unknown = [name for name in names if name not in COLUMNS]
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {unknown}")
    if "path" not in names or "label" not in names:
        problems.append("it needs 'path' and 'label'")
    if len(set(names)) != len(names):
        problems.append("a column is named twice")
    if problems:
        raise AdapterError(f"generic_csv: {labels}: header {first}: {'; '.join(problems)} "
                           f"(allowed: {', '.join(COLUMNS)})")
    return names

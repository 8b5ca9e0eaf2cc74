"""ChaLearn LAP apparent age (2015/2016) and APPA-REAL label CSVs: mean age and its σ.

Two column layouts are recognised from the header (case-insensitive):

* ChaLearn LAP ground truth (``train_gt.csv``, ``valid_gt.csv``, ``test_gt.csv``)::

      image,mean,stdv
      000025.jpg,36.0,4.27

  The same three columns without a header, and ``;`` instead of ``,``, are read too.
* APPA-REAL per-image summaries (``gt_avg_train.csv``, ...)::

      file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age
      000000.jpg,36,5.0,1.146423,4

The label is the apparent age (mean of the annotators' guesses) and ``sigma`` its std,
which DLDL-v2 uses as the per-image σ of the label distribution and the ε-error uses to
score. With ``target: real`` (APPA-REAL only) the label is the real age and ``sigma`` is
None (the data config's constant σ applies). σ = 0 (one annotator, or all agree) is kept:
the label space handles it. ``name_suffix`` picks APPA-REAL's face crops
(``000000.jpg`` + ``_face.jpg``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Iterator, Literal, Optional, Union

from data_prep.adapters.base import Record, Skip
from data_prep.adapters.common import (AdapterError, ParseError, is_number, missing_file,
                                       once_per_path, parse_number, parse_sigma, read_rows,
                                       require_dir, require_file, resolve)

NAME_COLUMNS = ("image", "file_name", "filename", "name")
MEAN_COLUMNS = ("mean", "apparent_age_avg")
STD_COLUMNS = ("stdv", "std", "apparent_age_std")
REAL_COLUMN = "real_age"


@dataclasses.dataclass(frozen=True)
class _Columns:
    """Column indices of one file's layout (``real`` is None when the file has none)."""

    name: int
    mean: int
    std: int
    real: Optional[int]
    header: bool


@dataclasses.dataclass(frozen=True)
class ChaLearnCsv:
    """Reads a ChaLearn LAP or APPA-REAL label CSV.

    Attributes:
      labels: the CSV file.
      root: the folder image names are relative to; "" means the CSV file's folder.
      target: "apparent" (mean guess, σ = the guesses' std) or "real" (APPA-REAL's real
        age, σ from the data config).
      name_suffix: appended to every image name, e.g. "_face.jpg" for APPA-REAL's crops.
      check_files: skip rows whose image is not on disk (``missing_file``); False reads
        the labels alone.
    """

    labels: str
    root: str = ""
    target: Literal["apparent", "real"] = "apparent"
    name_suffix: str = ""
    check_files: bool = True

    def __post_init__(self):
        require_file(self.labels, "labels", "chalearn_csv")
        if self.root:
            require_dir(self.root, "root", "chalearn_csv")

    def records(self) -> Iterator[Union[Record, Skip]]:
        """A Record or a Skip per data row, in the file's order."""
        labels = os.path.abspath(self.labels)
        root = os.path.abspath(self.root) if self.root else os.path.dirname(labels)
        rows = read_rows(labels, "chalearn_csv")
        first = next(rows, None)
        if first is None:
            raise AdapterError(f"chalearn_csv: {labels} has no rows")
        columns = self._layout(first[1], labels)
        if not columns.header:
            rows = itertools.chain([first], rows)
        yield from once_per_path(self._row(line, cells, f"{labels}:{line}", root, columns)
                                 for line, cells in rows)

    def _layout(self, first: list[str], labels: str) -> _Columns:
        names = [cell.lower() for cell in first]
        header = not is_number(first[1] if len(first) > 1 else "")
        if not header:
            columns = _Columns(name=0, mean=1, std=2, real=None, header=False)
        else:
            found = [_index(names, options) for options in (NAME_COLUMNS, MEAN_COLUMNS,
                                                            STD_COLUMNS)]
            if None in found:
                raise AdapterError(
                    f"chalearn_csv: {labels}: header {first} is neither ChaLearn's "
                    "'image,mean,stdv' nor APPA-REAL's 'file_name,num_ratings,"
                    "apparent_age_avg,apparent_age_std,real_age'")
            real = _index(names, (REAL_COLUMN,))
            columns = _Columns(*found, real=real, header=True)
        if self.target == "real" and columns.real is None:
            raise AdapterError(f"chalearn_csv: target 'real' needs a '{REAL_COLUMN}' column "
                               f"(APPA-REAL's gt_avg_*.csv); {labels} has none")
        return columns

    def _row(self, line: int, cells: list[str], where: str, root: str,
             columns: _Columns) -> Union[Record, Skip]:
        width = max(columns.name, columns.mean, columns.std, columns.real or 0) + 1
        if len(cells) < width:
            return Skip(where, "malformed_line",
                        f"{len(cells)} columns, expected at least {width}: {cells}")
        path = resolve(root, cells[columns.name] + self.name_suffix, where)
        if isinstance(path, Skip):
            return path
        try:
            if self.target == "real":
                label, sigma = parse_number(cells[columns.real], REAL_COLUMN), None
            else:
                label = parse_number(cells[columns.mean], "apparent age mean")
                sigma = parse_sigma(cells[columns.std], "apparent age std")
                if sigma is None:
                    raise ParseError("apparent age std is empty")
        except ParseError as error:
            return Skip(path, "bad_label", f"{where}: {error}")
        if self.check_files and not os.path.isfile(path):
            return missing_file(path, where)
        return Record(path=path, label=label, sigma=sigma)


def _index(names: list[str], options: tuple[str, ...]) -> Optional[int]:
    return next((names.index(option) for option in options if option in names), None)

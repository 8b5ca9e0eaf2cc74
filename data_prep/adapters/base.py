"""What every dataset adapter yields: records to keep and skips to report."""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Protocol, Union

UNKNOWN_GENDER = -1
UNKNOWN_GROUP = -1


@dataclasses.dataclass(frozen=True)
class Record:
    """One labelled image, before face alignment.

    Attributes:
      path: absolute path of the image file.
      label: y, in label units (years, rating points).
      sigma: per-image σ in label units (ChaLearn's annotator std), or None to use the
        dataset config's constant σ.
      subject: subject id, "" when unknown (then splits group by duplicates only).
      gender: 0 male, 1 female, -1 unknown.
      folder: the dataset's own fold/folder number, when it defines one.
      group: a dataset-defined group code for evaluation slices (UTKFace: race 0..4),
        named by the data config's ``group`` section; -1 unknown.
      split: the dataset's own split ("train", "val", "test"), when it defines one.
    """

    path: str
    label: float
    sigma: Optional[float] = None
    subject: str = ""
    gender: int = UNKNOWN_GENDER
    folder: Optional[int] = None
    split: Optional[str] = None
    group: int = UNKNOWN_GROUP


@dataclasses.dataclass(frozen=True)
class Skip:
    """An input that will not become a record, and why.

    Attributes:
      path: the file (or label-file line, as ``file:line``) that was skipped.
      reason: a short stable key, e.g. ``malformed_name``, ``missing_file``,
        ``label_out_of_range``, ``no_face``, ``unreadable_image``.
      detail: a human sentence: what is wrong and how to fix it.
    """

    path: str
    reason: str
    detail: str


class Adapter(Protocol):
    """A dataset reader: yields a Record or a Skip for every input it sees."""

    def records(self) -> Iterator[Union[Record, Skip]]:
        """Every input of the dataset, in a deterministic order."""

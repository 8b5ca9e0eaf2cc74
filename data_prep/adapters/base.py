"""What every dataset adapter yields: records to keep and skips to report."""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Protocol, Union

import numpy as np

from tfdldl import example_schema as schema

UNKNOWN_GENDER = -1
UNKNOWN_GROUP = -1


@dataclasses.dataclass(frozen=True)
class Record:
    """One labelled image, from its adapter to its shard (data_prep's one face record type).

    An adapter fills in what its dataset says; planning (data_prep.build.plan) resolves
    ``sigma`` and fills in ``source`` and ``sha256``; alignment turns the planned record
    into the written :class:`tfdldl.example_schema.FaceRecord` (:meth:`face`), which takes
    every field named like a feature of the schema table from here.

    Attributes:
      path: absolute path of the image file.
      label: y, in label units (years, rating points).
      sigma: per-image σ in label units (ChaLearn's annotator std), or None to use the
        dataset config's constant σ; always a float once planned.
      subject: subject id, "" when unknown (then splits group by duplicates only).
      gender: 0 male, 1 female, -1 unknown.
      folder: the dataset's own fold/folder number, when it defines one.
      split: the dataset's own split ("train", "val", "test"), when it defines one.
      group: a dataset-defined group code for evaluation slices (UTKFace: race 0..4),
        named by the data config's ``group`` section; -1 unknown.
      source: the path relative to the dataset root, stored in the TFRecord ("" until
        planned).
      sha256: SHA-256 (hex) of the image file's bytes, part of its shard's fingerprint
        ("" until planned, or when unknown).
    """

    path: str
    label: float
    sigma: Optional[float] = None
    subject: str = ""
    gender: int = UNKNOWN_GENDER
    folder: Optional[int] = None
    split: Optional[str] = None
    group: int = UNKNOWN_GROUP
    source: str = ""
    sha256: str = ""

    def face(self, jpeg: bytes, image_size: int, distribution: np.ndarray,
             coverage: float) -> schema.FaceRecord:
        """The face record to write for this planned record: the aligned face's
        ``jpeg`` (its side ``image_size`` pixels, ``coverage`` of its crop inside the
        photo, 0..1) and the label ``distribution`` (float32 [K]) with every feature of
        the schema table that this record carries (label, sigma, subject, gender, group,
        source).

        Raises:
          ValueError: a record whose σ is not resolved yet (not planned).
        """
        if self.sigma is None:
            raise ValueError(f"record {self.path} has no sigma yet; plan it first "
                             "(data_prep.build.plan resolves sigma from the data config)")
        carried = {entry.field: getattr(self, entry.field) for entry in schema.FEATURES
                   if entry.field in _FIELDS}
        return schema.FaceRecord(jpeg=jpeg, image_size=image_size, distribution=distribution,
                                 coverage=coverage, **carried)


_FIELDS = frozenset(field.name for field in dataclasses.fields(Record))


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

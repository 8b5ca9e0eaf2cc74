"""Leak-free train/val/test assignment: whole groups, never single files, are split.

A *group* is the union (transitive closure) of
  * duplicate groups (byte- or near-identical images, from data_prep.duplicates), and
  * subjects (records sharing a non-empty ``Record.subject``),
so a person or a duplicated photo always lands in exactly one split.

Methods (``SplitSpec.method``):

``ratio``
    Groups are sorted by their smallest path, shuffled with the seed, and laid end to
    end; a group goes to the split whose share of the records (``ratios``) its midpoint
    falls in. Split sizes are within one group of the ratios.
``kfold``
    The same shuffled sequence is cut into ``folds`` near-equal parts; part ``fold`` is the
    test split. ``val_fraction`` of the remaining records (whole groups, from the start of
    the shuffled sequence) become val, the rest train. Over fold = 0..folds-1 every record
    is tested exactly once.
``predefined``
    Each record's own ``Record.split`` (e.g. SCUT-FBP5500's train/test files).
``benchmark:<s>``, s in 0..4
    The Facial Age Estimation Benchmark's protocol over ``Record.folder``. Databases with
    10 subject-exclusive folders (0..9) use the benchmark's published table, which
    rotates by 2 for splits 0..2 but by 1 from split 2 to 3 and 3 to 4 (it is the table
    of facebase/benchmarks/*.yaml, reproduced here exactly, not a formula):

    ====  ==================  =======  =======
    s     train               val      test
    ====  ==================  =======  =======
    0     0 1 2 3 4 5         6 7      8 9
    1     2 3 4 5 6 7         8 9      0 1
    2     4 5 6 7 8 9         0 1      2 3
    3     5 6 7 8 9 0         1 2      3 4
    4     6 7 8 9 0 1         2 3      4 5
    ====  ==================  =======  =======

    So folders 3 and 4 are tested twice over the 5 splits and folders 6 and 7 never.
    Databases whose folders are only 0, 1, 2 (CLAP2016, CACD2000) use folder 0 = train,
    1 = val, 2 = test for every s. Other folder numbers (FG-Net's file numbers its 82
    subjects as folders 1..82) are an error: use ``kfold`` or ``ratio``, which keep each
    FG-Net subject in one split anyway.

In ``predefined`` and ``benchmark`` a group whose members the dataset puts in different
splits (duplicates across the official split) goes wholly to its most held-out split
(test before val before train), so an official test image never moves into training.

The assignment depends only on the set of records, the groups, the spec and the seed
(the data config's ``seed``), not on the order the adapter yields records in.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from data_prep.adapters.base import Record
from tfdldl.config import ConfigError
from tfdldl.example_schema import SPLITS

BENCHMARK_TEN_FOLDERS = (
    ((0, 1, 2, 3, 4, 5), (6, 7), (8, 9)),
    ((2, 3, 4, 5, 6, 7), (8, 9), (0, 1)),
    ((4, 5, 6, 7, 8, 9), (0, 1), (2, 3)),
    ((5, 6, 7, 8, 9, 0), (1, 2), (3, 4)),
    ((6, 7, 8, 9, 0, 1), (2, 3), (4, 5)),
)
BENCHMARK_THREE_FOLDERS = ((0,), (1,), (2,))
_METHOD = re.compile(r"^(ratio|kfold|predefined|benchmark:([0-4]))$")
_HELD_OUT_FIRST = ("test", "val", "train")


class SplitError(ConfigError):
    """A split spec that is invalid, or that the records cannot be split by."""


@dataclasses.dataclass
class SplitSpec:
    """How records are split; the ``splits`` section of a data config.

    Attributes:
      method: "ratio", "kfold", "predefined" or "benchmark:<s>" (s = 0..4); see the
        module docstring.
      ratios: train, val, test shares of the records for "ratio"; non-negative, sum 1.
      folds: number of folds for "kfold" (>= 2).
      fold: the test fold for "kfold", 0..folds-1.
      val_fraction: share of the non-test records held out as val for "kfold", in [0, 1).
    The seed is the data config's ``seed`` (passed to :func:`assign_splits`).
    """

    method: str = "ratio"
    ratios: list[float] = dataclasses.field(default_factory=lambda: [0.8, 0.1, 0.1])
    folds: int = 5
    fold: int = 0
    val_fraction: float = 0.0

    def __post_init__(self):
        if not _METHOD.match(self.method):
            raise SplitError(f"splits.method is {self.method!r}; use ratio, kfold, "
                             "predefined or benchmark:<s> with s in 0..4")
        if len(self.ratios) != len(SPLITS) or any(r < 0 for r in self.ratios) \
                or abs(sum(self.ratios) - 1.0) > 1e-6:
            raise SplitError(f"splits.ratios is {self.ratios}; give 3 non-negative shares "
                             "(train, val, test) that sum to 1, e.g. [0.8, 0.1, 0.1]")
        if self.folds < 2 or not 0 <= self.fold < self.folds:
            raise SplitError(f"splits.folds={self.folds}, splits.fold={self.fold}; need "
                             "folds >= 2 and 0 <= fold < folds")
        if not 0 <= self.val_fraction < 1:
            raise SplitError(f"splits.val_fraction is {self.val_fraction}; it must lie in "
                             "[0, 1)")

    @property
    def benchmark_split(self) -> Optional[int]:
        """s of "benchmark:<s>", None for the other methods."""
        match = _METHOD.match(self.method)
        return int(match.group(2)) if match.group(2) is not None else None


def group_records(records: Sequence[Record], groups: Iterable[Iterable[str]]) -> list[list[int]]:
    """Indices of ``records`` in groups that must share a split, in a canonical order.

    Args:
      records: the records to split.
      groups: duplicate groups as lists of paths (paths not among ``records`` are ignored).
    Returns:
      Every record index exactly once, in lists (singletons included), joined by
      duplicate group and by subject; sorted by each group's smallest path.
    """
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(members: Iterable[int]) -> None:
        members = list(members)
        for other in members[1:]:
            a, b = find(members[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)

    index_of = {record.path: i for i, record in enumerate(records)}
    for group in itertools.chain(groups, subject_groups(records)):
        union([index_of[path] for path in group if path in index_of])
    components: dict[int, list[int]] = {}
    for i in range(len(records)):
        components.setdefault(find(i), []).append(i)
    return sorted(components.values(), key=lambda members: min(records[i].path for i in members))


def assign_splits(records: Sequence[Record], groups: Iterable[Iterable[str]], spec: SplitSpec,
                  seed: int = 0) -> list[str]:
    """The split ("train", "val" or "test") of every record, by group.

    Args:
      records: the records to split (their paths must be unique).
      groups: duplicate groups as lists of paths (data_prep.duplicates.find_groups).
      spec: the method and its parameters.
      seed: makes "ratio" and "kfold" reproducible.
    Returns:
      A list aligned with ``records``.
    Raises:
      SplitError: "predefined" records without a valid ``split``, "benchmark" records
        without a folder of the protocol, or repeated paths.
    """
    if len({record.path for record in records}) != len(records):
        raise SplitError("records share a path; each image may appear only once "
                         "(the adapters skip repeated label-file entries)")
    components = group_records(records, groups)
    if spec.method in ("ratio", "kfold"):
        per_component = _shuffled_assignment(records, components, spec, seed)
    else:
        own = _own_splits(records, spec)
        per_component = [min((own[i] for i in members), key=_HELD_OUT_FIRST.index)
                         for members in components]
    result = [""] * len(records)
    for members, split in zip(components, per_component):
        for i in members:
            result[i] = split
    return result


def _shuffled_assignment(records: Sequence[Record], components: list[list[int]],
                         spec: SplitSpec, seed: int) -> list[str]:
    order = np.random.default_rng(seed).permutation(len(components))
    sizes = np.array([len(components[i]) for i in order], dtype=np.float64)
    midpoints = (np.cumsum(sizes) - sizes / 2) / max(sizes.sum(), 1.0)
    shuffled: list[str]
    if spec.method == "ratio":
        edges = np.cumsum(spec.ratios)[:-1]
        shuffled = [SPLITS[i] for i in np.searchsorted(edges, midpoints, side="right")]
    else:
        folds = np.minimum((midpoints * spec.folds).astype(int), spec.folds - 1)
        rest = folds != spec.fold
        rest_sizes = np.where(rest, sizes, 0.0)
        rest_mid = (np.cumsum(rest_sizes) - rest_sizes / 2) / max(rest_sizes.sum(), 1.0)
        shuffled = ["test" if not keep else ("val" if mid < spec.val_fraction else "train")
                    for keep, mid in zip(rest, rest_mid)]
    per_component = [""] * len(components)
    for position, component in enumerate(order):
        per_component[component] = shuffled[position]
    return per_component


def _own_splits(records: Sequence[Record], spec: SplitSpec) -> list[str]:
    """Each record's split by its own ``split`` (predefined) or ``folder`` (benchmark)."""
    if spec.method == "predefined":
        bad = [record for record in records if record.split not in SPLITS]
        if bad:
            raise SplitError(f"splits.method predefined needs every record's split in "
                             f"{SPLITS}; {len(bad)} record(s) have none or another, e.g. "
                             f"{bad[0].path} (split={bad[0].split!r}); this adapter may not "
                             "define splits: use ratio or kfold")
        return [record.split for record in records]
    table = _benchmark_table(records, spec.benchmark_split)
    return [table[record.folder] for record in records]


def _benchmark_table(records: Sequence[Record], split: int) -> dict[int, str]:
    """folder -> split name for benchmark split ``split`` of these records' database."""
    folders = {record.folder for record in records}
    if None in folders:
        example = next(record.path for record in records if record.folder is None)
        raise SplitError(f"splits.method benchmark:{split} needs Record.folder, but e.g. "
                         f"{example} has none; use the benchmark_json adapter")
    protocol = (BENCHMARK_THREE_FOLDERS if folders <= {0, 1, 2}
                else BENCHMARK_TEN_FOLDERS[split])
    table = {folder: name for name, members in zip(SPLITS, protocol) for folder in members}
    outside = sorted(folders - set(table))
    if outside:
        raise SplitError(f"splits.method benchmark:{split}: folder(s) {outside[:10]} are not "
                         "in the benchmark's 10-folder (0..9) or 3-folder (0, 1, 2) protocol "
                         "(FG-Net numbers its subjects as folders: use kfold or ratio)")
    return table


def find_straddling(groups: Iterable[Iterable[str]],
                    split_of: Mapping[str, str]) -> list[dict[str, list[str]]]:
    """Groups whose members lie in more than one split.

    Args:
      groups: lists of paths that must share a split (duplicate groups, subjects).
      split_of: path -> split; paths it lacks (e.g. skipped images) are ignored.
    Returns:
      [{"paths": [...], "splits": [split of each path]}] for every straddling group.
    """
    found = []
    for group in groups:
        present = [path for path in group if path in split_of]
        splits = [split_of[path] for path in present]
        if len(set(splits)) > 1:
            found.append({"paths": present, "splits": splits})
    return found


def check_no_straddling(groups: Iterable[Iterable[str]], split_of: Mapping[str, str]) -> None:
    """Raise SplitError naming the first straddling groups, if any group straddles splits."""
    found = find_straddling(groups, split_of)
    if found:
        examples = "; ".join(f"{list(zip(item['paths'], item['splits']))}" for item in found[:3])
        raise SplitError(f"{len(found)} group(s) straddle splits (leakage), e.g. {examples}")


def subject_groups(records: Iterable[Record]) -> list[list[str]]:
    """Paths of records sharing a non-empty subject, one list per subject (sorted by id)."""
    by_subject: dict[str, list[str]] = {}
    for record in records:
        if record.subject:
            by_subject.setdefault(record.subject, []).append(record.path)
    return [by_subject[subject] for subject in sorted(by_subject)]

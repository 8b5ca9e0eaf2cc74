"""Group-aware splits: reproducible, ratio-respecting, leak-free, and the benchmark protocol."""

import collections
import os

import pytest

from data_prep.adapters import make_adapter
from data_prep.adapters.base import Record
from data_prep.splits import (BENCHMARK_TEN_FOLDERS, SplitError, SplitSpec, assign_splits,
                              check_no_straddling, find_straddling, group_records,
                              subject_groups)
from data_prep.config import DataConfig
from tfdldl.config import ConfigError, from_dict


def _people(count=600, photos=(1, 2, 3, 5)):
    """Records of ``count`` subjects with varying numbers of photos, plus duplicate groups."""
    records = []
    for person in range(count):
        for photo in range(photos[person % len(photos)]):
            records.append(Record(f"/img/p{person:04d}_{photo}.jpg", float(person % 90),
                                  subject=f"p{person:04d}"))
    anonymous = [Record(f"/img/anon{i:04d}.jpg", float(i % 70)) for i in range(900)]
    duplicates = [[f"/img/anon{i:04d}.jpg", f"/img/anon{i + 1:04d}.jpg",
                   f"/img/p{i:04d}_0.jpg"] for i in range(0, 300, 10)]
    return records + anonymous, duplicates


def _split_of(records, assignment):
    return {record.path: split for record, split in zip(records, assignment)}


def test_defaults_and_config_section():
    spec = SplitSpec()
    assert (spec.method, spec.ratios, spec.benchmark_split) == ("ratio", [0.8, 0.1, 0.1], None)
    config = from_dict(DataConfig, {"splits": {"method": "benchmark:3"}}, source="t.yaml")
    assert config.splits.benchmark_split == 3
    for bad, words in [({"method": "benchmark:5"}, "benchmark:<s>"),
                       ({"method": "random"}, "use ratio"),
                       ({"ratios": [0.8, 0.1]}, "sum to 1"),
                       ({"ratios": [0.9, 0.2, -0.1]}, "non-negative"),
                       ({"method": "kfold", "folds": 5, "fold": 5}, "0 <= fold < folds"),
                       ({"val_fraction": 1.0}, "val_fraction")]:
        with pytest.raises(ConfigError, match=words) as error:
            from_dict(DataConfig, {"splits": bad}, source="t.yaml")
        assert "t.yaml" in str(error.value)


def test_ratio_split_is_reproducible_order_free_and_near_the_ratios():
    records, duplicates = _people()
    spec = SplitSpec(ratios=[0.7, 0.2, 0.1])
    first = assign_splits(records, duplicates, spec, seed=3)
    assert first == assign_splits(records, duplicates, spec, seed=3)
    reversed_records = records[::-1]
    again = _split_of(reversed_records, assign_splits(reversed_records, duplicates[::-1], spec, 3))
    assert again == _split_of(records, first)  # the adapter's order does not matter
    assert first != assign_splits(records, duplicates, spec, seed=4)
    counts = collections.Counter(first)
    for name, share in zip(("train", "val", "test"), spec.ratios):
        assert abs(counts[name] / len(records) - share) < 0.01, counts


def test_no_duplicate_group_or_subject_straddles():
    records, duplicates = _people()
    for spec in (SplitSpec(), SplitSpec(method="kfold", fold=2, val_fraction=0.2)):
        split_of = _split_of(records, assign_splits(records, duplicates, spec, seed=0))
        check_no_straddling(duplicates, split_of)
        check_no_straddling(subject_groups(records), split_of)
        # a duplicate joins a person to two anonymous photos: all of them move together
        assert split_of["/img/anon0030.jpg"] == split_of["/img/p0030_2.jpg"]


def test_groups_join_duplicates_and_subjects_transitively():
    records = [Record("/a", 1, subject="s1"), Record("/b", 2, subject="s1"), Record("/c", 3),
               Record("/d", 4), Record("/e", 5, subject="s2")]
    groups = group_records(records, [["/b", "/c"], ["/e", "/not-a-record"]])
    assert groups == [[0, 1, 2], [3], [4]]


def test_straddling_is_found_and_reported():
    groups = [["/a", "/b"], ["/c", "/d", "/skipped"]]
    split_of = {"/a": "train", "/b": "test", "/c": "val", "/d": "val"}
    assert find_straddling(groups, split_of) == [{"paths": ["/a", "/b"],
                                                   "splits": ["train", "test"]}]
    with pytest.raises(SplitError, match=r"1 group\(s\) straddle.*'/a', 'train'"):
        check_no_straddling(groups, split_of)


def test_kfold_tests_every_record_exactly_once():
    records, duplicates = _people(300)
    tested = collections.Counter()
    for fold in range(5):
        spec = SplitSpec(method="kfold", folds=5, fold=fold, val_fraction=0.25)
        assignment = assign_splits(records, duplicates, spec, seed=1)
        counts = collections.Counter(assignment)
        assert abs(counts["test"] / len(records) - 0.2) < 0.02
        assert abs(counts["val"] / (len(records) - counts["test"]) - 0.25) < 0.02
        check_no_straddling(subject_groups(records) + duplicates,
                            _split_of(records, assignment))
        tested.update(r.path for r, s in zip(records, assignment) if s == "test")
    assert len(tested) == len(records) and set(tested.values()) == {1}
    no_val = assign_splits(records, duplicates, SplitSpec(method="kfold"), seed=1)
    assert set(no_val) == {"train", "test"}


def test_predefined_keeps_the_dataset_split_and_held_out_wins():
    records = [Record("/a", 1, split="train"), Record("/b", 2, split="test"),
               Record("/c", 3, split="train"), Record("/d", 4, split="val"),
               Record("/e", 5, split="train")]
    assignment = assign_splits(records, [["/a", "/b"], ["/d", "/e"]],
                               SplitSpec(method="predefined"))
    assert assignment == ["test", "test", "train", "val", "val"]
    with pytest.raises(SplitError, match="predefined needs every record's split"):
        assign_splits([Record("/a", 1)], [], SplitSpec(method="predefined"))


def test_repeated_paths_are_refused():
    with pytest.raises(SplitError, match="share a path"):
        assign_splits([Record("/a", 1), Record("/a", 2)], [], SplitSpec())


def test_benchmark_table_rotation():
    for s, (train, val, test) in enumerate(BENCHMARK_TEN_FOLDERS):
        assert sorted(train + val + test) == list(range(10))
        assert len(train) == 6 and len(val) == 2 and len(test) == 2
    # the published table: test folders 8-9, 0-1, 2-3, 3-4, 4-5
    assert [test for _, _, test in BENCHMARK_TEN_FOLDERS] == [(8, 9), (0, 1), (2, 3), (3, 4),
                                                             (4, 5)]


def _benchmark_records(shared_datasets, name):
    path = os.path.join(shared_datasets, "benchmark-databases", f"{name}.json")
    return list(make_adapter("benchmark_json", labels=path, check_files=False).records())


def test_benchmark_protocol_on_agedb(shared_datasets):
    records = _benchmark_records(shared_datasets, "AgeDB")
    tested = collections.Counter()
    for s in range(5):
        assignment = assign_splits(records, [], SplitSpec(method=f"benchmark:{s}"))
        train, val, test = BENCHMARK_TEN_FOLDERS[s]
        for record, split in zip(records, assignment):
            expected = "train" if record.folder in train else "val" if record.folder in val \
                else "test"
            assert split == expected
        check_no_straddling(subject_groups(records), _split_of(records, assignment))
        counts = collections.Counter(assignment)
        assert 0.57 < counts["train"] / len(records) < 0.63
        tested.update({r.folder for r, split in zip(records, assignment) if split == "test"})
    # the published table tests folders 3 and 4 twice and folders 6 and 7 never
    assert tested == {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 1, 8: 1, 9: 1}


def test_benchmark_protocol_on_clap2016_and_fgnet(shared_datasets):
    records = _benchmark_records(shared_datasets, "CLAP2016")
    for s in (0, 4):
        counts = collections.Counter(assign_splits(records, [], SplitSpec(method=f"benchmark:{s}")))
        assert counts == {"train": 4113, "val": 1500, "test": 1978}
    fgnet = _benchmark_records(shared_datasets, "FG-Net")
    with pytest.raises(SplitError, match="FG-Net numbers its subjects"):
        assign_splits(fgnet, [], SplitSpec(method="benchmark:0"))
    assignment = assign_splits(fgnet, [], SplitSpec(method="kfold", fold=0), seed=0)
    check_no_straddling(subject_groups(fgnet), _split_of(fgnet, assignment))
    with pytest.raises(SplitError, match="needs Record.folder"):
        assign_splits([Record("/a", 1)], [], SplitSpec(method="benchmark:0"))

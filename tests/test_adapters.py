"""Dataset adapters: the real label files of ../shared, made-up files, and every bad case."""

import collections
import json
import os

import pytest

from data_prep.adapters import ADAPTERS, AdapterError, make_adapter
from data_prep.adapters.base import Record, Skip
from data_prep.adapters.scut_fbp import gender_of
from data_prep.adapters.utkface import parse_name
from tfdldl.config import ConfigError


def _split(items):
    records = [item for item in items if isinstance(item, Record)]
    skips = [item for item in items if isinstance(item, Skip)]
    assert len(records) + len(skips) == len(items)
    return records, skips


def _touch(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8 not decoded by adapters")


# -- registry -------------------------------------------------------------------------


def test_unknown_adapter_lists_the_known_ones():
    with pytest.raises(AdapterError) as error:
        make_adapter("utk_face", root=".")
    message = str(error.value)
    assert "utk_face" in message
    for name in ADAPTERS:
        assert name in message


def test_missing_unknown_and_mistyped_options_are_config_errors(tmp_path):
    with pytest.raises(AdapterError, match="needs option.*root"):
        make_adapter("utkface")
    with pytest.raises(ConfigError, match="unknown key 'adapter.options.folder'"):
        make_adapter("utkface", root=str(tmp_path), folder="x")
    with pytest.raises(ConfigError, match="fold"):
        make_adapter("scut_fbp5500", labels=str(tmp_path), fold="two")
    with pytest.raises(ConfigError, match="target"):
        (tmp_path / "gt.csv").write_text("image,mean,stdv\n")
        make_adapter("chalearn_csv", labels=str(tmp_path / "gt.csv"), target="median")


def test_absent_folders_and_label_files_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="root=.*not an existing folder"):
        make_adapter("utkface", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="labels=.*not an existing file"):
        make_adapter("generic_csv", labels=str(tmp_path / "labels.csv"))


# -- UTKFace --------------------------------------------------------------------------


def test_utkface_real_names(utkface_dir):
    records, skips = _split(list(make_adapter("utkface", root=utkface_dir).records()))
    assert len(records) + len(skips) == 20152
    by_name = {os.path.basename(skip.path): skip for skip in skips}
    assert set(by_name) == {
        "39_1_20170116174525125.jpg.chip.jpg",  # a field missing
        "61_1_20170109150557335.jpg.chip.jpg",  # a field missing
        "24_0_1_20170116220224657 .jpg.chip.jpg",  # a stray space
        "55_0_0_20170116232725357jpg.chip.jpg",  # a missing dot
    }
    assert all(skip.reason == "malformed_name" for skip in skips)
    assert "3 underscore-separated fields" in by_name["39_1_20170116174525125.jpg.chip.jpg"].detail
    assert "space" in by_name["24_0_1_20170116220224657 .jpg.chip.jpg"].detail
    assert "missing dot" in by_name["55_0_0_20170116232725357jpg.chip.jpg"].detail
    assert [r.path for r in records] == sorted(r.path for r in records)  # deterministic
    ages = [r.label for r in records]
    assert min(ages) == 1 and max(ages) == 116
    assert {r.gender for r in records} == {0, 1} and {r.subject for r in records} == {""}
    first = records[0]
    assert os.path.basename(first.path) == "100_0_0_20170112215240346.jpg.chip.jpg"
    assert (first.label, first.gender, first.sigma, first.folder) == (100.0, 0, None, None)
    assert first.group == 0 and {r.group for r in records} == {0, 1, 2, 3, 4}  # race codes


def test_utkface_bad_names_and_non_images(tmp_path):
    _touch(tmp_path, "26_1_2_20170116174525125.jpg.chip.jpg",
           "26_2_2_20170116174525125.jpg.chip.jpg",
           "26_1_7_20170116174525125.jpg.chip.jpg", "x6_1_2_20170116174525125.jpg.chip.jpg",
           "26_1_2_2017011617452512.jpg.chip.jpg", "26_1_2.jpg", "notes.txt", ".DS_Store")
    (tmp_path / "extra").mkdir()
    records, skips = _split(list(make_adapter("utkface", root=str(tmp_path)).records()))
    assert [(os.path.basename(r.path), r.label, r.gender) for r in records] == [
        ("26_1_2_2017011617452512.jpg.chip.jpg", 26.0, 1),  # 16-digit stamp: labels intact
        ("26_1_2_20170116174525125.jpg.chip.jpg", 26.0, 1),
    ]
    reasons = {os.path.basename(s.path): (s.reason, s.detail) for s in skips}
    assert reasons["26_2_2_20170116174525125.jpg.chip.jpg"][0] == "malformed_name"
    assert "gender field '2'" in reasons["26_2_2_20170116174525125.jpg.chip.jpg"][1]
    assert "race field '7'" in reasons["26_1_7_20170116174525125.jpg.chip.jpg"][1]
    assert "age field 'x6'" in reasons["x6_1_2_20170116174525125.jpg.chip.jpg"][1]
    assert reasons["26_1_2.jpg"][0] == "malformed_name"
    assert reasons["notes.txt"][0] == reasons[".DS_Store"][0] == "not_an_image"
    assert reasons["extra"][0] == "not_an_image" and "folder" in reasons["extra"][1]
    assert isinstance(parse_name("/x/5_0_3_20170116174525125.jpg.chip.jpg"), Record)


# -- FG-NET ---------------------------------------------------------------------------


def test_fgnet_names(tmp_path):
    _touch(tmp_path, "001A02.JPG", "001A43a.JPG", "001A43b.jpg", "082a18.jpg", "1A02.JPG",
           "001B02.JPG", "readme.txt")
    records, skips = _split(list(make_adapter("fgnet", root=str(tmp_path)).records()))
    assert [(os.path.basename(r.path), r.subject, r.label) for r in records] == [
        ("001A02.JPG", "001", 2.0), ("001A43a.JPG", "001", 43.0), ("001A43b.jpg", "001", 43.0),
        ("082a18.jpg", "082", 18.0)]
    assert {os.path.basename(s.path): s.reason for s in skips} == {
        "001B02.JPG": "malformed_name", "1A02.JPG": "malformed_name",
        "readme.txt": "not_an_image"}


# -- Facial Age Estimation Benchmark database JSON ---------------------------------


@pytest.mark.parametrize("name, count, subjects, sigma, folders", [
    ("FG-Net", 1002, 82, False, set(range(1, 83))),
    ("AgeDB", 16488, 567, False, set(range(10))),
    ("CLAP2016", 7591, 0, True, {0, 1, 2}),
])
def test_benchmark_json_real_files(shared_datasets, name, count, subjects, sigma, folders):
    path = os.path.join(shared_datasets, "benchmark-databases", f"{name}.json")
    records, skips = _split(list(make_adapter("benchmark_json", labels=path,
                                              check_files=False).records()))
    assert len(records) == count and not skips
    assert {r.folder for r in records} == folders
    assert len({r.subject for r in records} - {""}) == subjects
    assert all((r.sigma is not None) == sigma for r in records)
    entries = json.load(open(path))
    assert records[0].path == os.path.join(os.path.dirname(path), entries[0]["img_path"])
    assert records[0].label == entries[0]["age"]
    if name == "AgeDB":
        assert collections.Counter(r.gender for r in records) == {0: 9788, 1: 6700}
    # with the images absent, every entry is a missing_file skip naming its entry
    _, missing = _split(list(make_adapter("benchmark_json", labels=path).records()))
    assert len(missing) == count and {s.reason for s in missing} == {"missing_file"}
    assert f"{path}:entry 0" in missing[0].detail


def test_benchmark_json_bad_entries(tmp_path):
    _touch(tmp_path, "db/a.jpg", "db/b.jpg", "db/c.jpg", "db/d.jpg", "db/e.jpg", "db/f.jpg")
    entries = [
        {"img_path": "db/a.jpg", "age": 31, "folder": 4, "id_num": 7, "gender": "F",
         "std_age": 3.5},
        {"img_path": "db/b.jpg", "age": "thirty", "folder": 4},
        {"img_path": "db/c.jpg", "age": -1, "folder": 4},
        {"img_path": "db/d.jpg", "age": 20, "folder": "x"},
        {"img_path": "db/e.jpg", "age": 20, "folder": 1, "std_age": -2},
        {"img_path": "db/f.jpg", "age": 20, "folder": 1, "gender": "Q"},
        {"img_path": "db/missing.jpg", "age": 20, "folder": 1},
        {"age": 20, "folder": 1},
        ["not", "an", "object"],
        {"img_path": "db/a.jpg", "age": 32, "folder": 4},
    ]
    labels = tmp_path / "db.json"
    labels.write_text(json.dumps(entries))
    records, skips = _split(list(make_adapter("benchmark_json", labels=str(labels)).records()))
    assert records == [Record(str(tmp_path / "db" / "a.jpg"), 31.0, sigma=3.5, subject="7",
                              gender=1, folder=4)]
    assert [s.reason for s in skips] == ["bad_label", "unknown_label", "bad_field", "bad_field",
                                         "bad_field", "missing_file", "malformed_line",
                                         "malformed_line", "duplicate_entry"]
    assert "age is 'thirty', not a number" in skips[0].detail and "entry 1" in skips[0].detail
    assert "folder is 'x'" in skips[2].detail
    assert "cannot be negative" in skips[3].detail
    assert "gender is 'Q'" in skips[4].detail
    assert "lacks img_path" in skips[6].detail


def test_benchmark_json_that_is_not_a_list(tmp_path):
    (tmp_path / "a.json").write_text('{"img_path": "x.jpg"}')
    (tmp_path / "b.json").write_text("[{]")
    with pytest.raises(AdapterError, match="JSON list"):
        list(make_adapter("benchmark_json", labels=str(tmp_path / "a.json")).records())
    with pytest.raises(AdapterError, match="not valid JSON"):
        list(make_adapter("benchmark_json", labels=str(tmp_path / "b.json")).records())


# -- ChaLearn / APPA-REAL ------------------------------------------------------------


def test_chalearn_layout(tmp_path):
    _touch(tmp_path, "imgs/000025.jpg", "imgs/000026.jpg", "imgs/000027.jpg", "imgs/000028.jpg")
    (tmp_path / "train_gt.csv").write_text(
        "image,mean,stdv\n000025.jpg,36.0,4.27\n000026.jpg,5,0\n\n000027.jpg,abc,1\n"
        "000028.jpg,30,-1\n000029.jpg,30,2\n000030.jpg\n")
    adapter = make_adapter("chalearn_csv", labels=str(tmp_path / "train_gt.csv"),
                           root=str(tmp_path / "imgs"))
    records, skips = _split(list(adapter.records()))
    assert [(os.path.basename(r.path), r.label, r.sigma) for r in records] == [
        ("000025.jpg", 36.0, 4.27), ("000026.jpg", 5.0, 0.0)]
    assert [(s.reason, s.path.rsplit(":", 1)[-1] if s.reason == "malformed_line" else
             os.path.basename(s.path)) for s in skips] == [
        ("bad_label", "000027.jpg"), ("bad_label", "000028.jpg"),
        ("missing_file", "000029.jpg"), ("malformed_line", "8")]
    assert "train_gt.csv:5" in skips[0].detail  # line numbers count the blank line


def test_chalearn_without_header_and_with_semicolons(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg")
    (tmp_path / "gt.csv").write_text("a.jpg;20.5;3.1\nb.jpg;40;6\n")
    records, skips = _split(list(make_adapter("chalearn_csv",
                                              labels=str(tmp_path / "gt.csv")).records()))
    assert [(r.label, r.sigma) for r in records] == [(20.5, 3.1), (40.0, 6.0)] and not skips


def test_appa_real_layout_apparent_and_real(tmp_path):
    _touch(tmp_path, "000000.jpg_face.jpg", "000001.jpg_face.jpg")
    (tmp_path / "gt_avg_train.csv").write_text(
        "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n"
        "000000.jpg,36,5.0,1.146423,4\n000001.jpg,63,20.33,3.32,18\n")
    options = dict(labels=str(tmp_path / "gt_avg_train.csv"), name_suffix="_face.jpg")
    apparent, _ = _split(list(make_adapter("chalearn_csv", **options).records()))
    assert [(r.label, r.sigma) for r in apparent] == [(5.0, 1.146423), (20.33, 3.32)]
    assert apparent[0].path.endswith("000000.jpg_face.jpg")
    real, _ = _split(list(make_adapter("chalearn_csv", target="real", **options).records()))
    assert [(r.label, r.sigma) for r in real] == [(4.0, None), (18.0, None)]


def test_chalearn_unknown_header_and_real_without_column(tmp_path):
    (tmp_path / "odd.csv").write_text("picture,guess,spread\na.jpg,3,1\n")
    with pytest.raises(AdapterError, match="neither ChaLearn"):
        list(make_adapter("chalearn_csv", labels=str(tmp_path / "odd.csv")).records())
    (tmp_path / "gt.csv").write_text("image,mean,stdv\na.jpg,3,1\n")
    with pytest.raises(AdapterError, match="real_age"):
        list(make_adapter("chalearn_csv", labels=str(tmp_path / "gt.csv"),
                          target="real").records())
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(AdapterError, match="no rows"):
        list(make_adapter("chalearn_csv", labels=str(tmp_path / "empty.csv")).records())


# -- SCUT-FBP5500 ---------------------------------------------------------------------


def test_scut_fbp5500_real_split_files(shared_datasets):
    labels = os.path.join(shared_datasets, "scut-fbp5500-labels")
    tested = collections.Counter()
    for fold in range(1, 6):
        adapter = make_adapter("scut_fbp5500", labels=labels, fold=fold, check_files=False)
        records, skips = _split(list(adapter.records()))
        assert not skips
        counts = collections.Counter(r.split for r in records)
        assert counts == {"train": 4400, "test": 1100}
        assert len({r.path for r in records}) == 5500
        assert all(1.0 <= r.label <= 5.0 for r in records)
        assert {r.gender for r in records} == {0, 1}
        tested.update(r.path for r in records if r.split == "test")
    assert len(tested) == 5500 and set(tested.values()) == {1}  # each image tested once
    first = make_adapter("scut_fbp5500", labels=labels, check_files=False).records()
    assert next(first) == Record(os.path.join(labels, "mty152.jpg"), 4.316667, gender=0,
                                 split="train")


def test_scut_fbp5500_release_layout_and_bad_lines(tmp_path):
    folder = tmp_path / "cross_validation_2"
    folder.mkdir()
    (folder / "train_2.txt").write_text("fty1.jpg 3.5\nAM2.jpg 2,5\nCF3.jpg\n")
    (folder / "test_2.txt").write_text("mtw4.jpg 4.1 extra\nftw5.jpg 1.9\n")
    _touch(tmp_path / "Images", "fty1.jpg", "mtw4.jpg")
    adapter = make_adapter("scut_fbp5500", labels=str(tmp_path), root=str(tmp_path / "Images"),
                           fold=2)
    records, skips = _split(list(adapter.records()))
    assert [(os.path.basename(r.path), r.label, r.split, r.gender) for r in records] == [
        ("fty1.jpg", 3.5, "train", 1)]
    assert [s.reason for s in skips] == ["bad_label", "malformed_line", "malformed_line",
                                         "missing_file"]
    assert "score is '2,5'" in skips[0].detail
    with pytest.raises(FileNotFoundError, match="fold 3 split files not found"):
        list(make_adapter("scut_fbp5500", labels=str(tmp_path), fold=3).records())
    with pytest.raises(ConfigError, match="folds 1..5"):
        make_adapter("scut_fbp5500", labels=str(tmp_path), fold=6)
    assert (gender_of("AM12.jpg"), gender_of("CF1.jpg"), gender_of("x.jpg")) == (0, 1, -1)


# -- generic CSV ------------------------------------------------------------------------


def test_generic_csv_positional_paths_relative_to_the_csv(tmp_path):
    _touch(tmp_path / "set", "faces/a.jpg", "faces/b.jpg", "faces/c.jpg")
    absolute = tmp_path / "set" / "faces" / "c.jpg"
    (tmp_path / "set" / "labels.csv").write_text(
        f"faces/a.jpg,31\nfaces/b.jpg,7.5,1.5,p02,F\n{absolute},60,,p02,0\n")
    records, skips = _split(list(make_adapter(
        "generic_csv", labels=str(tmp_path / "set" / "labels.csv")).records()))
    assert not skips
    assert records == [
        Record(str(tmp_path / "set" / "faces" / "a.jpg"), 31.0),
        Record(str(tmp_path / "set" / "faces" / "b.jpg"), 7.5, sigma=1.5, subject="p02",
               gender=1),
        Record(str(absolute), 60.0, subject="p02", gender=0),
    ]


def test_generic_csv_header_in_any_order_and_bad_rows(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")
    (tmp_path / "labels.csv").write_text(
        "label,gender,path\n20,m,a.jpg\nold,f,b.jpg\n30,x,c.jpg\n25,,missing.jpg\n"
        "40,f,d.jpg,extra\n,f,e.jpg\n22,m,a.jpg\n")
    records, skips = _split(list(make_adapter("generic_csv",
                                              labels=str(tmp_path / "labels.csv")).records()))
    assert [(os.path.basename(r.path), r.label, r.gender) for r in records] == [("a.jpg", 20.0, 0)]
    assert [s.reason for s in skips] == ["bad_label", "bad_field", "missing_file",
                                         "malformed_line", "bad_label", "duplicate_entry"]
    assert "label is 'old', not a number" in skips[0].detail and "labels.csv:3" in skips[0].detail
    assert "gender is 'x'" in skips[1].detail


def test_generic_csv_rejects_an_unknown_header(tmp_path):
    (tmp_path / "labels.csv").write_text("file,age\na.jpg,3\n")
    with pytest.raises(AdapterError, match=r"unknown column\(s\) \['file', 'age'\]"):
        list(make_adapter("generic_csv", labels=str(tmp_path / "labels.csv")).records())
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81 binary")
    with pytest.raises(AdapterError, match="not UTF-8"):
        list(make_adapter("generic_csv", labels=str(tmp_path / "binary.csv")).records())

"""data_prep.build end to end on real UTKFace faces with real-world dirt mixed in.

One build (2 worker processes, real MTCNN) is shared by most tests; the TFRecords are
read back with tf.data.
"""

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep import build as build_module
from data_prep.config import DataConfig, load_data_config
from tfdldl import example_schema as schema
from tfdldl.config import ConfigError, from_dict
from tfdldl.label_space import AGE
from tfdldl.manifest import read_manifest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = (
    "1_1_1_20170109191050443.jpg.chip.jpg",
    "24_1_2_20170116171604159.jpg.chip.jpg",
    "26_1_1_20170113012119680.jpg.chip.jpg",
    "28_1_3_20170104222837663.jpg.chip.jpg",
    "32_0_1_20170113183229559.jpg.chip.jpg",
    "36_1_3_20170117173858390.jpg.chip.jpg",
    "44_0_3_20170119184239800.jpg.chip.jpg",
    "53_1_0_20170110160643282.jpg.chip.jpg",
    "65_0_0_20170117171434763.jpg.chip.jpg",
    "96_1_2_20170105174624519.jpg.chip.jpg",
)
MALFORMED = "39_1_20170116174525125.jpg.chip.jpg"  # a real UTKFace name missing a field
CORRUPT = "30_0_0_20170101000000001.jpg.chip.jpg"
TOO_OLD = "110_0_0_20170101000000002.jpg.chip.jpg"
# A byte-identical copy of GOOD[2] labelled with another age: a conflicting duplicate.
DUPLICATE = "27_1_1_20170113012119680.jpg.chip.jpg"


def _config(images, out, **sections) -> DataConfig:
    data = {
        "dataset": "utkface_sample",
        "adapter": {"name": "utkface", "options": {"root": str(images)}},
        "alignment": {"output_size": 64, "min_face_size": 40, "precropped": True},
        "splits": {"ratios": [0.5, 0.25, 0.25]},
        "output": {"dir": str(out), "records_per_shard": 3, "contact_sheet_faces": 8},
        "workers": 2,
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(DataConfig, data, source="test")


@pytest.fixture(scope="module")
def sample(utkface_dir, tmp_path_factory):
    """Real faces plus a malformed name, a truncated JPEG, an age of 110 and a duplicate."""
    images = tmp_path_factory.mktemp("utk") / "images"
    images.mkdir()
    for name in GOOD + (MALFORMED,):
        shutil.copy(os.path.join(utkface_dir, name), images / name)
    shutil.copy(os.path.join(utkface_dir, GOOD[2]), images / DUPLICATE)
    shutil.copy(os.path.join(utkface_dir, GOOD[0]), images / TOO_OLD)
    data = open(os.path.join(utkface_dir, GOOD[1]), "rb").read()
    (images / CORRUPT).write_bytes(data[: len(data) // 2])
    return images


@pytest.fixture(scope="module")
def built(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "tfrecords"
    config = _config(sample, out)
    lines = []
    manifest = build_module.build(config, log=lines.append)
    return config, out, manifest, lines


def _read(shards):
    features = {
        schema.IMAGE: tf.io.FixedLenFeature([], tf.string),
        schema.LABEL: tf.io.FixedLenFeature([], tf.float32),
        schema.SIGMA: tf.io.FixedLenFeature([], tf.float32),
        schema.DISTRIBUTION: tf.io.FixedLenFeature([AGE.num_classes], tf.float32),
        schema.SOURCE: tf.io.FixedLenFeature([], tf.string),
        schema.IMAGE_SIZE: tf.io.FixedLenFeature([], tf.int64),
        schema.VERSION: tf.io.FixedLenFeature([], tf.int64),
    }
    dataset = tf.data.TFRecordDataset(shards).map(
        lambda record: tf.io.parse_single_example(record, features))
    return [{key: value.numpy() for key, value in example.items()} for example in dataset]


def test_records_read_back_with_labels_and_distributions(built):
    _, out, _, _ = built
    manifest = read_manifest(out)
    assert manifest.label_space == AGE and manifest.image_size == 64
    sources = []
    for split in schema.SPLITS:
        examples = _read(manifest.splits[split])
        assert len(examples) == manifest.counts[split]
        for example in examples:
            name = os.path.basename(example[schema.SOURCE].decode())
            sources.append(name)
            assert example[schema.LABEL] == float(name.split("_")[0])
            distribution = example[schema.DISTRIBUTION]
            assert distribution.sum() == pytest.approx(1.0, abs=1e-5)
            assert AGE.grid[distribution.argmax()] == example[schema.LABEL]
            assert example[schema.SIGMA] == pytest.approx(2.0)
            assert example[schema.VERSION] == schema.SCHEMA_VERSION
            face = tf.io.decode_jpeg(example[schema.IMAGE]).numpy()
            assert face.shape == (64, 64, 3) and example[schema.IMAGE_SIZE] == 64
    assert sorted(sources) == sorted(GOOD + (DUPLICATE,))  # every good face, once


def test_every_bad_input_is_counted_with_its_reason(built):
    _, out, manifest, _ = built
    assert manifest["skips"]["by_reason"] == {
        "malformed_name": 1, "unreadable_image": 1, "label_out_of_range": 1}
    rows = [line.rstrip("\n").split("\t") for line in open(out / "skipped.tsv")][1:]
    by_file = {os.path.basename(path): (reason, detail) for path, reason, detail in rows}
    assert by_file[MALFORMED][0] == "malformed_name"
    assert by_file[CORRUPT] == ("unreadable_image", by_file[CORRUPT][1])
    assert "truncated JPEG" in by_file[CORRUPT][1]
    assert by_file[TOO_OLD][0] == "label_out_of_range" and "110" in by_file[TOO_OLD][1]
    alignment = manifest["alignment"]
    assert alignment["detected"] == alignment["attempted"] == len(GOOD) + 1
    assert alignment["mean_confidence"] > 0.9 and alignment["center_cropped"] == 0


def test_duplicates_share_a_split_and_conflicts_are_reported(built):
    _, out, manifest, _ = built
    split_of = {}
    for split in schema.SPLITS:
        for example in _read(read_manifest(out).splits[split]):
            split_of[os.path.basename(example[schema.SOURCE].decode())] = split
    assert split_of[DUPLICATE] == split_of[GOOD[2]]
    assert DUPLICATE in json.dumps(manifest["duplicates"])


def test_manifest_reports_histogram_config_and_contact_sheet(built):
    config, out, manifest, lines = built
    total = sum(info["count"] for info in manifest["splits"].values())
    histogram = collections.Counter()
    for split in schema.SPLITS:
        histogram.update(manifest["label_histogram"][split])
    assert sum(histogram.values()) == total == manifest["records"]["written"]
    assert histogram["26"] == 1 and histogram["27"] == 1
    assert manifest["config"]["alignment"]["min_face_size"] == 40
    assert manifest["seconds"] > 0
    assert os.path.getsize(out / "contact_sheet.png") > 1000
    assert any("images/s" in line and "ETA" in line for line in lines)  # progress
    assert any("faces detected" in line for line in lines)  # summary


def test_resume_rebuilds_only_the_missing_shard(built, sample):
    config, out, first, _ = built
    shards = sorted(p for p in os.listdir(out) if p.endswith(".tfrecord"))
    victim = out / shards[0]
    others = {name: os.path.getmtime(out / name) for name in shards[1:]}
    os.remove(victim)
    (out / (shards[1] + ".partial")).write_bytes(b"left over by a killed run")
    lines = []
    again = build_module.build(config, log=lines.append)
    assert victim.exists() and not (out / (shards[1] + ".partial")).exists()
    assert {name: os.path.getmtime(out / name) for name in shards[1:]} == others
    assert again["this_run"]["images_aligned"] == len(_read([str(victim)]))
    assert again["splits"] == first["splits"]
    assert any(f"{len(shards) - 1} of {len(shards)} shards already finished" in line
               for line in lines)


def test_csv_dataset_with_missing_file(utkface_dir, tmp_path):
    rows = ["path,label", f"{GOOD[3]},28", f"{GOOD[4]},32", "gone.jpg,40", f"{GOOD[5]},-3"]
    for name in (GOOD[3], GOOD[4], GOOD[5]):
        shutil.copy(os.path.join(utkface_dir, name), tmp_path / name)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    config = _config(tmp_path, tmp_path / "out", workers=1,
                     adapter={"name": "generic_csv",
                              "options": {"labels": str(tmp_path / "labels.csv")}},
                     splits={"ratios": [1.0, 0.0, 0.0]})
    manifest = build_module.build(config, log=lambda line: None)
    reasons = manifest["skips"]["by_reason"]
    assert reasons.get("missing_file") == 1 and reasons.get("label_out_of_range") == 1
    assert manifest["splits"]["train"]["count"] == 2


def test_unknown_config_key_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: x\nalignment:\n  min_face_sise: 40\n")
    with pytest.raises(ConfigError, match="unknown key 'alignment.min_face_sise'.*min_face_size"):
        load_data_config(path)
    result = subprocess.run([sys.executable, "-m", "data_prep.build", "--config", str(path)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2
    assert "unknown key 'alignment.min_face_sise'" in result.stderr
    assert "Traceback" not in result.stderr


def test_center_crop_needs_precropped_and_missing_dataset_is_clear(tmp_path):
    path = tmp_path / "crop.yaml"
    path.write_text("alignment: {on_no_face: center_crop}\n")
    with pytest.raises(ConfigError, match="precropped"):
        load_data_config(path)
    config = _config(tmp_path / "absent", tmp_path / "out")
    with pytest.raises(build_module.BuildError, match="absent"):
        build_module.build(config, log=lambda line: None)


def test_every_shipped_data_config_loads():
    folder = os.path.join(REPO_ROOT, "configs", "data")
    names = sorted(name for name in os.listdir(folder) if name.endswith(".yaml"))
    assert "utkface.yaml" in names and "synthetic.yaml" in names
    for name in names:
        config = load_data_config(os.path.join(folder, name))
        assert config.label_space.build().num_classes > 1
    assert np.isclose(load_data_config(os.path.join(folder, "scut_fbp5500.yaml"))
                      .label_space.step, 0.1)


# -- nothing changes or mixes silently --------------------------------------------------


def _shards(out):
    return sorted(name for name in os.listdir(out) if name.endswith(".tfrecord"))


def _rebuild(config):
    lines = []
    manifest = build_module.build(config, log=lines.append)
    finished = next(line for line in lines if "shards already finished" in line)
    return manifest, finished


def test_a_source_replaced_in_place_is_aligned_again(built, sample):
    config, out, _, _ = built
    _rebuild(config)  # start from a finished build, whatever earlier tests did
    manifest = read_manifest(out)
    source = sample / GOOD[3]
    shard = next(path for path in manifest.shards("train") + manifest.shards("val")
                 + manifest.shards("test")
                 if GOOD[3].encode() in b"".join(r[schema.SOURCE] for r in _read([path])))
    before = {name: os.path.getmtime(out / name) for name in _shards(out)}
    old_face = next(r[schema.IMAGE] for r in _read([shard]) if r[schema.SOURCE] == GOOD[3].encode())
    image = tf.io.decode_jpeg(source.read_bytes()).numpy()
    source.write_bytes(tf.io.encode_jpeg(image[:, ::-1]).numpy())  # same path and label
    _, finished = _rebuild(config)
    assert f"{len(before) - 1} of {len(before)} shards already finished" in finished
    after = {name: os.path.getmtime(out / name) for name in _shards(out)}
    assert [name for name in before if before[name] != after[name]] == [os.path.basename(shard)]
    new_face = next(r[schema.IMAGE] for r in _read([shard]) if r[schema.SOURCE] == GOOD[3].encode())
    assert new_face != old_face


def test_shard_fingerprints_are_those_of_builds_before_the_record_types_merged():
    """A planned record's fingerprint is what the planned-item type's was (hex from that
    code), so builds made before still resume; a later change of a written field, or a
    record field added later, changes it; the dataset's folder and split do not."""
    from data_prep import shard_job
    from data_prep.adapters.base import Record

    settings = shard_job.Settings(label_space={"name": "age", "minimum": 0.0, "maximum": 100.0,
                                               "step": 1.0}, output_size=64, min_face_size=20,
                                  thresholds=(0.6, 0.7, 0.7), scale_factor=0.709,
                                  max_side=1024, framing={"a": 1}, on_no_face="skip",
                                  jpeg_quality=95)
    items = (Record("/d/a.jpg", 31.0, sigma=2.0, subject="s1", gender=1, folder=4,
                    split="train", group=3, source="a.jpg", sha256="ab"),
             Record("/d/b.jpg", 7.5, sigma=1.5, source="b.jpg"))
    task = shard_job.ShardTask("train", 0, 2, items, settings)
    assert task.fingerprint() == (
        "f1b1b8bf0851694c82710be755a049524713ff70d181e428321fc5c66ad5b7aa")
    regrouped = dataclasses.replace(task, items=(dataclasses.replace(items[0], group=2),
                                                 items[1]))
    assert regrouped.fingerprint() != task.fingerprint()
    refolded = dataclasses.replace(task, items=(dataclasses.replace(items[0], folder=1,
                                                                    split=None), items[1]))
    assert refolded.fingerprint() == task.fingerprint()
    later = dataclasses.make_dataclass("Later", [("glasses", int, 0)], bases=(Record,),
                                       frozen=True)
    glasses = [dataclasses.replace(task, items=(later(**dataclasses.asdict(items[0]),
                                                      glasses=value), items[1]))
               for value in (0, 1)]
    assert glasses[0].fingerprint() != glasses[1].fingerprint()


def test_each_source_is_hashed_in_the_pass_that_reads_it(built):
    """The shard fingerprints' source SHA-256 come from duplicate detection's single read
    of each file (no second pass over the sources)."""
    config, _, _, _ = built
    records, _ = build_module.collect(config)
    assignment, _, digests = build_module.split_records(config, records)
    expected = {record.path: hashlib.sha256(open(record.path, "rb").read()).hexdigest()
                for record in records}
    assert digests == expected
    tasks = build_module.plan(config, records, assignment, build_module.data_root(records),
                              digests)
    assert {item.path: item.sha256 for task in tasks for item in task.items} == {
        os.path.abspath(path): digest for path, digest in expected.items()}


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap"])
def test_a_damaged_or_swapped_shard_is_named_by_readers_and_rebuilt(built, damage):
    from tfdldl import input_pipeline, tfrecord_reader

    config, out, _, _ = built
    _rebuild(config)
    names = _shards(out)
    victim = out / names[0]
    content = victim.read_bytes()
    if damage == "flip":  # one byte in the middle of the JPEG data, same size
        middle = len(content) // 2
        victim.write_bytes(content[:middle] + bytes([content[middle] ^ 0xFF])
                           + content[middle + 1:])
    elif damage == "truncate":
        victim.write_bytes(content[:len(content) - 100])
    else:  # a shard of the same name from another build (here: another shard's bytes)
        shutil.copy(out / names[-1], victim)
    manifest = read_manifest(out)
    split = names[0].split("-")[0]
    expected = {"flip": "SHA-256 differs", "truncate": "bytes, its build wrote",
                "swap": "copied in from another build"}[damage]
    with pytest.raises(tfrecord_reader.ShardMismatchError, match=expected) as error:
        tfrecord_reader.read_split(manifest, split)
    assert str(victim) in str(error.value) and "rerun data_prep.build" in str(error.value)
    with pytest.raises(tfrecord_reader.ShardMismatchError, match=names[0]):
        input_pipeline.make_dataset(manifest, split, 2, ["value"], training=False)
    _, finished = _rebuild(config)  # formerly: "every shard is finished", damage kept
    assert f"{len(names) - 1} of {len(names)} shards already finished" in finished
    tfrecord_reader.read_split(read_manifest(out), split)  # the rebuilt shard matches


def test_a_second_build_into_a_busy_folder_is_refused(built):
    from tfdldl.safe_io import FolderLock

    config, out, _, _ = built
    with FolderLock(out, "another build"):
        with pytest.raises(build_module.BuildError, match="being written by another process"):
            build_module.build(config, log=lambda line: None)


def test_links_planted_in_the_output_folder_are_not_followed(built, tmp_path):
    config, out, _, _ = built
    _rebuild(config)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    victim = _shards(out)[0]
    os.remove(out / victim)  # its sidecar is written again
    for name in ("skipped.tsv", "contact_sheet.png", "manifest.json",
                 os.path.join(".build", victim + ".json")):
        os.remove(out / name) if os.path.lexists(out / name) else None
        os.symlink(outside, out / name)
    manifest, _ = _rebuild(config)
    assert outside.read_text() == "precious"
    for name in ("skipped.tsv", "contact_sheet.png", "manifest.json"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert read_manifest(out).raw["shards"] == manifest["shards"]
    sidecars = tmp_path / "sidecars"  # kept aside: the last build need not realign all
    os.rename(out / ".build", sidecars)
    os.symlink(tmp_path, out / ".build")
    with pytest.raises(build_module.BuildError, match=r"\.build is a symbolic link"):
        build_module.build(config, log=lambda line: None)
    os.remove(out / ".build")
    os.rename(sidecars, out / ".build")
    _rebuild(config)

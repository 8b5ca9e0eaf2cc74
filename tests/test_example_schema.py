"""One table (tfdldl.example_schema.FEATURES) drives the writer, both readers and the record type."""

import dataclasses
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

from data_prep.adapters.base import Record
from data_prep.tfrecord_writer import serialize
from tfdldl import example_schema as schema
from tfdldl import example_spec, tfrecord_reader
from tfdldl.label_space import AGE
from tfdldl.manifest import read_manifest

# The UTKFace build in the repository's data folder (git-ignored; absent on a user's machine).
BUILT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                     "utkface_128")

FACE = schema.FaceRecord(jpeg=b"\xff\xd8 bytes \x00", image_size=24, label=37.0, sigma=2.5,
                         distribution=AGE.gaussian(np.float32([37.0]), 2.5)[0],
                         subject="s-ü", gender=1, source="a/b.jpg", group=3, coverage=0.75)


def _tensorflow_read(data: bytes) -> dict:
    """{field: value} as tf.io.parse_example reads the record with the table's spec."""
    spec = example_spec.feature_spec([entry.key for entry in schema.FEATURES], AGE.num_classes)
    parsed = tf.io.parse_single_example(data, spec)
    values = {}
    for entry in schema.FEATURES:
        value = parsed[entry.key].numpy()
        values[entry.field] = value.decode("utf-8") if entry.dtype == "text" else value
    return values


def _assert_reads_as(data: bytes, expected: schema.FaceRecord) -> None:
    ours = tfrecord_reader.decode_face(data)
    theirs = _tensorflow_read(data)
    for field in dataclasses.fields(schema.FaceRecord):
        for value in (getattr(ours, field.name), theirs[field.name]):
            np.testing.assert_array_equal(value, getattr(expected, field.name), field.name)


def test_the_table_and_the_record_type_name_the_same_fields():
    assert sorted(entry.field for entry in schema.FEATURES) == sorted(
        field.name for field in dataclasses.fields(schema.FaceRecord))
    assert all(entry.dtype in schema.DTYPES for entry in schema.FEATURES)
    with pytest.raises(KeyError, match="'age' is not a feature of the tfdldl face schema"):
        schema.feature("age")


def test_a_written_face_reads_back_the_same_through_both_readers():
    _assert_reads_as(serialize(FACE), FACE)


def test_features_a_record_lacks_read_as_the_table_defaults():
    """Records written before a feature existed: both readers give the table's default."""
    required = [entry for entry in schema.FEATURES if entry.default is None]
    full = tf.train.Example.FromString(serialize(FACE))
    kept = tf.train.Example()
    for entry in required:
        kept.features.feature[entry.key].CopyFrom(full.features.feature[entry.key])
    defaults = {entry.field: entry.default for entry in schema.FEATURES
                if entry.default is not None}
    _assert_reads_as(kept.SerializeToString(), dataclasses.replace(FACE, **defaults))
    assert defaults == {"sigma": 0.0, "subject": "", "gender": -1, "group": -1, "source": "",
                        "coverage": -1.0, "schema_version": 0}
    del kept.features.feature[schema.LABEL]
    with pytest.raises(ValueError, match="feature 'label' is missing"):
        tfrecord_reader.decode_face(kept.SerializeToString())


def test_a_planned_record_carries_its_table_fields_into_the_written_face():
    """data_prep's Record (adapter to shard) gives the written FaceRecord every feature it
    carries; only the alignment's results are added."""
    record = Record(path="/d/a.jpg", label=37.0, sigma=2.5, subject="s-ü", gender=1,
                    folder=2, split="train", group=3, source="a/b.jpg", sha256="ab12")
    face = record.face(FACE.jpeg, 24, FACE.distribution, 0.75)
    _assert_reads_as(serialize(face), FACE)
    with pytest.raises(ValueError, match="has no sigma yet; plan it first"):
        dataclasses.replace(record, sigma=None).face(FACE.jpeg, 24, FACE.distribution, 0.75)


def test_records_of_an_existing_build_read_and_write_back_the_same_example():
    """The format is unchanged: records of data/utkface_128 (built before the record types
    were merged) read the same through both readers, and writing what was read gives the
    same tf.train.Example."""
    if not os.path.exists(os.path.join(BUILT, schema.MANIFEST_NAME)):
        pytest.skip(f"{BUILT} is absent: this test needs the repository's built UTKFace data")
    manifest = read_manifest(BUILT)
    shard = manifest.shards("test")[0]
    for _, data in itertools.islice(tfrecord_reader.iter_records(shard), 16):
        face = tfrecord_reader.decode_face(data)
        assert face.distribution.shape == (manifest.label_space.num_classes,)
        _assert_reads_as(data, face)
        assert tf.train.Example.FromString(serialize(face)) == tf.train.Example.FromString(data)

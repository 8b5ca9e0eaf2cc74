"""The TensorFlow-free TFRecord reader decodes exactly what TensorFlow writes and reads."""

import json
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from data_prep import synthetic
from data_prep.tfrecord_writer import serialize, write_shard
from tfdldl import example_schema as schema
from tfdldl import tfrecord_reader
from tfdldl.label_space import AGE
from tfdldl.manifest import read_manifest

TF_FEATURES = {
    schema.IMAGE: tf.io.FixedLenFeature([], tf.string),
    schema.IMAGE_SIZE: tf.io.FixedLenFeature([], tf.int64),
    schema.LABEL: tf.io.FixedLenFeature([], tf.float32),
    schema.SIGMA: tf.io.FixedLenFeature([], tf.float32),
    schema.DISTRIBUTION: tf.io.FixedLenFeature([AGE.num_classes], tf.float32),
    schema.SUBJECT: tf.io.FixedLenFeature([], tf.string),
    schema.GENDER: tf.io.FixedLenFeature([], tf.int64),
    schema.GROUP: tf.io.FixedLenFeature([], tf.int64),
    schema.SOURCE: tf.io.FixedLenFeature([], tf.string),
    schema.VERSION: tf.io.FixedLenFeature([], tf.int64),
}


@pytest.fixture(scope="module")
def record_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("records"))
    return synthetic.write_tfrecord_set(root, AGE, {"train": 9, "val": 3}, image_size=24,
                                        shards_per_split=2, seed=3)


def _face(label: float, gender: int = -1, subject: str = "") -> schema.FaceRecord:
    return schema.FaceRecord(jpeg=b"\xff\xd8 not really a jpeg \x00\x01", image_size=24,
                             label=label, sigma=2.0,
                             distribution=AGE.gaussian(np.float32([label]), 2.0)[0],
                             subject=subject, gender=gender, source="a/b.jpg")


def _assert_same_as_tensorflow(data: bytes) -> None:
    expected = {key: value.numpy() for key, value in
                tf.io.parse_single_example(data, TF_FEATURES).items()}
    record = tfrecord_reader.decode_face(data)
    assert record.jpeg == expected[schema.IMAGE]
    assert record.image_size == expected[schema.IMAGE_SIZE]
    assert record.label == expected[schema.LABEL]
    assert record.sigma == expected[schema.SIGMA]
    np.testing.assert_array_equal(record.distribution, expected[schema.DISTRIBUTION])
    assert record.distribution.dtype == np.float32
    assert record.subject.encode() == expected[schema.SUBJECT]
    assert record.gender == expected[schema.GENDER]
    assert record.group == expected[schema.GROUP]
    assert record.source.encode() == expected[schema.SOURCE]
    assert record.schema_version == expected[schema.VERSION]


def test_every_record_equals_tensorflow_parse(record_set):
    manifest = read_manifest(record_set)
    count = 0
    for path in manifest.shards("train") + manifest.shards("val"):
        ours = [data for _, data in tfrecord_reader.iter_records(path, verify_data=True)]
        theirs = [item.numpy() for item in tf.data.TFRecordDataset(path)]
        assert ours == theirs
        for data in ours:
            _assert_same_as_tensorflow(data)
            count += 1
    assert count == 12


def test_negative_ints_and_empty_strings_decode(tmp_path):
    data = serialize(_face(37.0, gender=-1, subject=""))
    _assert_same_as_tensorflow(data)
    assert tfrecord_reader.decode_face(data).gender == -1


def test_records_without_a_group_read_as_unknown():
    """Records written before the group feature existed read as group -1."""
    example = tf.train.Example()
    example.ParseFromString(serialize(_face(37.0, gender=1)))
    del example.features.feature[schema.GROUP]
    record = tfrecord_reader.decode_face(example.SerializeToString())
    assert (record.gender, record.group) == (1, -1)


def test_split_arrays_hold_a_column_per_feature_of_the_table(record_set):
    faces = tfrecord_reader.read_split(read_manifest(record_set), "train")
    order = [0, 2, 4, 6, 8, 1, 3, 5, 7]  # record i is in shard i % 2
    assert list(faces.columns) == [entry.key for entry in schema.FEATURES]
    assert faces.field(schema.GENDER).tolist() == [i % 2 for i in order]
    assert faces.field(schema.GROUP).tolist() == [i % len(synthetic.SYNTHETIC_GROUPS)
                                                  for i in order]
    assert faces.field(schema.SOURCE).tolist() == [f"train/{i:05d}.jpg" for i in order]
    assert faces.field(schema.GENDER).dtype == np.int32
    assert faces.field(schema.SIGMA).dtype == np.float32
    assert faces.jpegs is faces.field(schema.IMAGE) and len(faces) == 9
    with pytest.raises(KeyError, match="'age' is not a feature of the tfdldl face schema"):
        faces.field("age")


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _unpacked_example(label: float, distribution: np.ndarray) -> bytes:
    """An Example whose float and int64 lists are written UNPACKED (legal proto2 encoding)."""

    def feature(key: str, kind: int, body: bytes) -> bytes:
        return _delimited(1, _delimited(1, key.encode()) + _delimited(2, _delimited(kind, body)))

    def floats(values) -> bytes:
        return b"".join(_key(1, 5) + struct.pack("<f", v) for v in values)

    def ints(values) -> bytes:
        return b"".join(_key(1, 0) + _varint(v) for v in values)

    entries = [
        feature(schema.IMAGE, 1, _delimited(1, b"jpeg bytes")),
        feature(schema.IMAGE_SIZE, 3, ints([24])),
        feature(schema.LABEL, 2, floats([label])),
        feature(schema.SIGMA, 2, floats([2.0])),
        feature(schema.DISTRIBUTION, 2, floats(distribution)),
        feature(schema.SUBJECT, 1, _delimited(1, "sübject".encode())),
        feature(schema.GENDER, 3, ints([-1])),
        feature(schema.GROUP, 3, ints([3])),
        feature(schema.SOURCE, 1, _delimited(1, b"x.jpg")),
        feature(schema.VERSION, 3, ints([1])),
    ]
    return _delimited(1, b"".join(entries))


def test_unpacked_lists_decode_like_tensorflow():
    distribution = AGE.gaussian(np.float32([12.5]), 3.0)[0]
    data = _unpacked_example(12.5, distribution)
    _assert_same_as_tensorflow(data)
    record = tfrecord_reader.decode_face(data)
    assert record.subject == "sübject" and (record.gender, record.group) == (-1, 3)
    np.testing.assert_array_equal(record.distribution, distribution)


def test_gzip_records_are_read(tmp_path):
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    write_shard(path, [_face(5.0), _face(6.0)], compression="GZIP")
    labels = [tfrecord_reader.decode_face(data).label
              for _, data in tfrecord_reader.iter_records(path, verify_data=True)]
    assert labels == [5.0, 6.0]


def test_crc32c_matches_the_standard_check_value():
    assert tfrecord_reader.crc32c_python(b"123456789") == 0xE3069283
    assert tfrecord_reader.crc32c(b"123456789") == 0xE3069283


def _shard_with_offsets(folder, count=3):
    folder.mkdir(exist_ok=True)
    path = str(folder / "train-00000-of-00001.tfrecord")
    write_shard(path, [_face(float(i)) for i in range(count)])
    offsets = [offset for offset, _ in tfrecord_reader.iter_records(path)]
    return path, offsets


def test_corrupt_data_names_file_and_offset(tmp_path):
    path, offsets = _shard_with_offsets(tmp_path)
    with open(path, "r+b") as handle:  # flip one byte inside record 1's data
        handle.seek(offsets[1] + 12 + 5)
        byte = handle.read(1)
        handle.seek(offsets[1] + 12 + 5)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(tfrecord_reader.TFRecordError) as error:
        list(tfrecord_reader.iter_records(path, verify_data=True))
    assert path in str(error.value) and f"byte {offsets[1]}" in str(error.value)
    assert "CRC" in str(error.value)


def test_corrupt_length_and_truncation_name_file_and_offset(tmp_path):
    path, offsets = _shard_with_offsets(tmp_path)
    with open(path, "r+b") as handle:
        handle.seek(offsets[2])
        handle.write(b"\x07")
    with pytest.raises(tfrecord_reader.TFRecordError, match=f"length at byte {offsets[2]}"):
        list(tfrecord_reader.iter_records(path))

    path, offsets = _shard_with_offsets(tmp_path / "second")
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size - 3)
    with pytest.raises(tfrecord_reader.TFRecordError) as error:
        list(tfrecord_reader.iter_records(path, verify_data=False))
    assert f"truncated record at byte {offsets[2]}" in str(error.value) and path in str(error.value)


def test_a_record_of_another_schema_is_refused_with_its_offset(tmp_path):
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    other = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
    })).SerializeToString()
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(serialize(_face(1.0)))
        writer.write(other)
    first_size = 8 + 4 + len(serialize(_face(1.0))) + 4
    with pytest.raises(tfrecord_reader.TFRecordError) as error:
        list(tfrecord_reader.read_faces([path]))
    message = str(error.value)
    assert path in message and f"byte {first_size}" in message
    assert "feature 'image/size' is missing" in message


def test_read_split_checks_count_and_width(record_set, tmp_path):
    manifest = read_manifest(record_set)
    faces = tfrecord_reader.read_split(manifest, "train")
    distributions = faces.field(schema.DISTRIBUTION)
    assert len(faces) == 9 and distributions.shape == (9, AGE.num_classes)
    np.testing.assert_allclose(distributions.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(faces.field(schema.LABEL),
                                  AGE.grid[np.argmax(distributions, 1)])

    raw = dict(manifest.raw)
    raw["splits"] = {"train": {**raw["splits"]["train"], "count": 10}}
    root = tmp_path / "wrong_count"
    root.mkdir()
    for shard in manifest.shards("train"):
        os.symlink(shard, root / os.path.basename(shard))
    (root / schema.MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(tfrecord_reader.TFRecordError, match="hold 9 records but the manifest"):
        tfrecord_reader.read_split(read_manifest(root), "train")

    raw["splits"]["train"]["count"] = 9
    raw["label_space"] = {"name": "age", "minimum": 0, "maximum": 50, "step": 1}
    (root / schema.MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(tfrecord_reader.TFRecordError, match="stores 101 distribution values"):
        tfrecord_reader.read_split(read_manifest(root), "train")

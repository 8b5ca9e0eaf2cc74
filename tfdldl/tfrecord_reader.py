"""Read the project's TFRecords without TensorFlow (for Keras on JAX or PyTorch).

Records are framed and parsed by :mod:`tfdldl.tfrecord_format` (TFRecord framing with its
CRCs, the ``tf.train.Example`` wire format), and decoded here into faces of the schema in
:mod:`tfdldl.example_schema`. Every error names the file and the byte offset of the record
concerned.

:func:`verify_shards` checks shards against the manifest's record of its build (size and
SHA-256 of each shard), so a shard damaged, truncated or copied in from another build is
refused by name before anything reads it; tfdldl.input_pipeline calls it too.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from tfdldl import example_schema as schema
from tfdldl.manifest import Manifest, ManifestError
from tfdldl.safe_io import file_sha256
from tfdldl.tfrecord_format import (COMPILED_CRC32C, TFRecordError, crc32c, crc32c_python,
                                    iter_records, masked_crc, parse_example)

# Also the framing names callers know from this module (tfdldl.tfrecord_format).
__all__ = ["TFRecordError", "ShardMismatchError", "verify_shards", "iter_records",
           "parse_example", "crc32c", "crc32c_python", "masked_crc", "COMPILED_CRC32C",
           "FaceRecord", "decode_face", "read_faces", "FaceArrays", "read_split"]


class ShardMismatchError(ManifestError):
    """A shard that is not the one its build wrote (damaged, cut short, or swapped)."""


# (path, size, mtime_ns) of shards already verified in this process.
_VERIFIED: set[tuple[str, int, int]] = set()


def verify_shards(manifest: Manifest, splits: Optional[Sequence[str]] = None) -> None:
    """Check the shards of ``splits`` (default: all) against the manifest's ``shards``
    record: each file's size and SHA-256 must be the ones its build wrote.

    Manifests written before builds recorded their shards have nothing to check against
    and pass. A shard checked once in this process is not hashed again until its size or
    modification time changes.

    Raises:
      ShardMismatchError: a shard that differs, or that the record does not list; the
        message names the file and how to rebuild it.
    """
    record = manifest.raw.get("shards")
    if not record:
        return
    for split in splits if splits is not None else list(manifest.splits):
        for path in manifest.splits.get(split, []):
            stat = os.stat(path)
            key = (path, stat.st_size, stat.st_mtime_ns)
            if key in _VERIFIED:
                continue
            expected = record.get(os.path.basename(path))
            problem = None
            if expected is None:
                problem = "is not part of the build this manifest describes"
            elif stat.st_size != expected.get("bytes"):
                problem = (f"has {stat.st_size} bytes, its build wrote {expected.get('bytes')} "
                           "(cut short, damaged, or copied in from another build)")
            elif file_sha256(path) != expected.get("sha256"):
                problem = ("is not the file its build wrote (SHA-256 differs: damaged, or "
                           "copied in from another build)")
            if problem:
                raise ShardMismatchError(
                    f"shard {path} {problem}; rebuild it: rerun data_prep.build with the data "
                    "config of this folder (it rebuilds every shard that does not match)")
            _VERIFIED.add(key)


# The one face record type (tfdldl.example_schema), under the name readers know.
FaceRecord = schema.FaceRecord


def _value(features: dict, entry: schema.Feature):
    """The value of the schema feature ``entry`` in a parsed Example's ``features``, checked
    against the table: its dtype, one value (or the whole array for a per-class feature),
    text decoded; the table's default when absent.

    Raises:
      ValueError: a required feature missing, or one of another kind or length.
    """
    value = features.get(entry.key)
    if value is None or len(value) == 0:
        if entry.default is None:
            raise ValueError(f"feature '{entry.key}' is missing")
        return entry.default
    kind = "bytes" if entry.dtype in ("bytes", "text") else entry.dtype
    actual = ("bytes" if isinstance(value, list)
              else "float" if value.dtype == np.float32 else "int")
    if actual != kind:
        raise ValueError(f"feature '{entry.key}' is a {actual} list, expected a {kind} list")
    if entry.shape:
        return value
    if len(value) != 1:
        raise ValueError(f"feature '{entry.key}' has {len(value)} values, expected 1")
    if entry.dtype == "text":
        return value[0].decode("utf-8")
    return value[0] if entry.dtype == "bytes" else (
        int(value[0]) if entry.dtype == "int" else float(value[0]))


def decode_face(data: bytes) -> FaceRecord:
    """Decode one serialized record into a :class:`FaceRecord` (every feature of the schema
    table, tfdldl.example_schema.FEATURES).

    Raises:
      ValueError: not a valid Example, or a required feature missing or of the wrong kind.
    """
    features = parse_example(data)
    return FaceRecord(**{entry.field: _value(features, entry) for entry in schema.FEATURES})


def read_faces(paths: Sequence[str], verify_data: Optional[bool] = None) -> Iterator[FaceRecord]:
    """Every record of ``paths`` in file order, decoded.

    Raises:
      TFRecordError: framing, CRC or schema problems, naming the file and byte offset.
    """
    for path in paths:
        for offset, data in iter_records(path, verify_data):
            try:
                record = decode_face(data)
            except ValueError as error:
                raise TFRecordError(f"{path}: record at byte {offset} is not a tfdldl face "
                                    f"example: {error}; rebuild this shard with "
                                    "data_prep.build") from None
            if record.schema_version > schema.SCHEMA_VERSION:
                raise TFRecordError(f"{path}: record at byte {offset} has schema_version "
                                    f"{record.schema_version}, newer than this tfdldl "
                                    f"understands ({schema.SCHEMA_VERSION}); upgrade tfdldl")
            yield record


# The in-memory column of each table dtype (bytes stay a list of N bytes objects).
_COLUMN_DTYPES = {"float": np.float32, "int": np.int32, "text": object}


@dataclasses.dataclass(frozen=True)
class FaceArrays:
    """A whole split held in memory, one column per feature of the schema table
    (tfdldl.example_schema.FEATURES); N records, K classes.

    Attributes:
      columns: feature key -> its column: a list of N bytes for a bytes feature (the
        JPEGs), else an array [N] (float32 for float, int32 for int, str objects for text)
        or [N, K] for a per-class feature (the distributions).
      image_size: side of the stored faces, pixels (the manifest's).
    """

    columns: dict[str, Any]
    image_size: int

    @classmethod
    def from_records(cls, records: Sequence[FaceRecord], image_size: int,
                     num_classes: int) -> "FaceArrays":
        """The columns of ``records``, each per-class feature [N, ``num_classes``]."""
        columns: dict[str, Any] = {}
        for entry in schema.FEATURES:
            values = [getattr(record, entry.field) for record in records]
            if entry.dtype == "bytes":
                columns[entry.key] = values
            elif entry.shape:
                columns[entry.key] = np.asarray(values, np.float32).reshape(-1, num_classes)
            else:
                columns[entry.key] = np.asarray(values, _COLUMN_DTYPES[entry.dtype])
        return cls(columns, image_size)

    def __len__(self) -> int:
        return len(self.jpegs)

    @property
    def jpegs(self) -> list[bytes]:
        """The N encoded faces (the image/encoded column)."""
        return self.columns[schema.IMAGE]

    def field(self, key: str) -> Any:
        """The column of the schema feature ``key`` (see ``columns``).

        Raises:
          KeyError: a key that is not a feature of the schema (the message lists them).
        """
        return self.columns[schema.feature(key).key]


def read_split(manifest: Manifest, split: str, verify_data: Optional[bool] = None) -> FaceArrays:
    """Load every record of ``split`` into a :class:`FaceArrays`.

    Raises:
      ManifestError: the split is missing or empty, or a shard is not the one its build
        wrote (ShardMismatchError, see verify_shards).
      TFRecordError: a corrupt record, a distribution whose width is not the manifest's K,
        or a record count different from the manifest's.
    """
    paths = manifest.shards(split)
    verify_shards(manifest, [split])
    k = manifest.label_space.num_classes
    records = []
    for record in read_faces(paths, verify_data):
        if record.distribution.shape != (k,):
            raise TFRecordError(
                f"split '{split}' of {manifest.root}: a record ({record.source or 'no source'})"
                f" stores {record.distribution.size} distribution values but the manifest's "
                f"label space {manifest.label_space.describe()} has K = {k}; rebuild the data")
        records.append(record)
    expected = manifest.counts.get(split)
    if expected is not None and expected != len(records):
        raise TFRecordError(f"split '{split}' of {manifest.root}: the shards hold "
                            f"{len(records)} records but the manifest says {expected}; "
                            "rebuild the data")
    return FaceArrays.from_records(records, manifest.image_size, k)

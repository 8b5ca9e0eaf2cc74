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
from typing import Iterator, Optional, Sequence

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


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """One decoded record of the schema in :mod:`tfdldl.example_schema`.

    Attributes:
      jpeg: encoded aligned face (JPEG bytes).
      image_size: side of the stored face, pixels.
      label: y in label units.
      sigma: σ of its label distribution, label units.
      distribution: float32 [K], the stored Gaussian label distribution.
      subject, source: strings ("" when absent).
      gender: 0, 1 or -1.
      group: the dataset's group code (names in the manifest), -1 unknown or absent.
      coverage: share of the aligned crop inside the source photo, -1 when not recorded.
      schema_version: the writer's SCHEMA_VERSION.
    """

    jpeg: bytes
    image_size: int
    label: float
    sigma: float
    distribution: np.ndarray
    subject: str
    gender: int
    source: str
    schema_version: int
    group: int = -1
    coverage: float = -1.0


def _value(features: dict, key: str, kind: str, default=None, scalar: bool = True):
    """Feature ``key`` checked to be of ``kind`` ("bytes", "float", "int").

    Returns its single value (``scalar``) or the whole array; ``default`` when absent
    (a missing required feature, ``default`` None, raises ValueError).
    """
    value = features.get(key)
    if value is None or len(value) == 0:
        if default is None:
            raise ValueError(f"feature '{key}' is missing")
        return default
    actual = ("bytes" if isinstance(value, list)
              else "float" if value.dtype == np.float32 else "int")
    if actual != kind:
        raise ValueError(f"feature '{key}' is a {actual} list, expected a {kind} list")
    if not scalar:
        return value
    if len(value) != 1:
        raise ValueError(f"feature '{key}' has {len(value)} values, expected 1")
    return value[0]


def decode_face(data: bytes) -> FaceRecord:
    """Decode one serialized record into a :class:`FaceRecord`.

    Raises:
      ValueError: not a valid Example, or a required feature missing or of the wrong kind.
    """
    features = parse_example(data)
    return FaceRecord(
        jpeg=_value(features, schema.IMAGE, "bytes"),
        image_size=int(_value(features, schema.IMAGE_SIZE, "int")),
        label=float(_value(features, schema.LABEL, "float")),
        sigma=float(_value(features, schema.SIGMA, "float", default=0.0)),
        distribution=_value(features, schema.DISTRIBUTION, "float", scalar=False),
        subject=_value(features, schema.SUBJECT, "bytes", default=b"").decode("utf-8"),
        gender=int(_value(features, schema.GENDER, "int", default=-1)),
        source=_value(features, schema.SOURCE, "bytes", default=b"").decode("utf-8"),
        schema_version=int(_value(features, schema.VERSION, "int", default=0)),
        group=int(_value(features, schema.GROUP, "int", default=-1)),
        coverage=float(_value(features, schema.COVERAGE, "float", default=-1.0)),
    )


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


@dataclasses.dataclass(frozen=True)
class FaceArrays:
    """A whole split held in memory, column by column (N records, K classes).

    Attributes:
      jpegs: N encoded faces (bytes).
      labels: float32 [N], label units.
      sigmas: float32 [N], label units.
      distributions: float32 [N, K].
      image_size: side of the stored faces, pixels.
      genders: int32 [N], 0 male, 1 female, -1 unknown (empty when not read).
      groups: int32 [N], the dataset's group codes, -1 unknown (empty when not read).
    """

    jpegs: list[bytes]
    labels: np.ndarray
    sigmas: np.ndarray
    distributions: np.ndarray
    image_size: int
    genders: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    groups: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.jpegs)

    def field(self, key: str) -> np.ndarray:
        """The column of the schema feature ``key`` (tfdldl.example_schema), [N, ...].

        Raises:
          KeyError: a feature not held in memory (the message lists those that are).
        """
        columns = {schema.LABEL: self.labels, schema.SIGMA: self.sigmas,
                   schema.DISTRIBUTION: self.distributions, schema.GENDER: self.genders,
                   schema.GROUP: self.groups}
        if key not in columns:
            raise KeyError(f"feature '{key}' is not held in memory; FaceArrays holds "
                           f"{', '.join(columns)}")
        return columns[key]


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
    jpegs, labels, sigmas, distributions, genders, groups = [], [], [], [], [], []
    for record in read_faces(paths, verify_data):
        if record.distribution.shape != (k,):
            raise TFRecordError(
                f"split '{split}' of {manifest.root}: a record ({record.source or 'no source'})"
                f" stores {record.distribution.size} distribution values but the manifest's "
                f"label space {manifest.label_space.describe()} has K = {k}; rebuild the data")
        jpegs.append(record.jpeg)
        labels.append(record.label)
        sigmas.append(record.sigma)
        distributions.append(record.distribution)
        genders.append(record.gender)
        groups.append(record.group)
    expected = manifest.counts.get(split)
    if expected is not None and expected != len(jpegs):
        raise TFRecordError(f"split '{split}' of {manifest.root}: the shards hold {len(jpegs)} "
                            f"records but the manifest says {expected}; rebuild the data")
    return FaceArrays(jpegs=jpegs, labels=np.asarray(labels, np.float32),
                      sigmas=np.asarray(sigmas, np.float32),
                      distributions=np.stack(distributions).astype(np.float32),
                      image_size=manifest.image_size,
                      genders=np.asarray(genders, np.int32),
                      groups=np.asarray(groups, np.int32))

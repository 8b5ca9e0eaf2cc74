"""Read the project's TFRecords without TensorFlow (for Keras on JAX or PyTorch).

Two small formats are decoded here by hand, in NumPy and plain Python:

- **TFRecord framing**, record after record::

      uint64 length (little endian) | uint32 masked CRC32C of the length bytes
      length bytes of data          | uint32 masked CRC32C of the data

  with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`` (mod 2**32). The length CRC is
  always checked (8 bytes: cheap even in Python). The data CRC is checked when
  ``verify_data`` is True, or when it is None ("auto") and a compiled CRC32C is importable
  (``google-crc32c`` or ``crc32c``); the pure-Python fallback costs about 0.13 s/MB.
  GZIP-compressed files (``TFRecordWriter`` with "GZIP") are read transparently.
- **tf.train.Example** protobuf wire format, exactly as far as the schema in
  :mod:`tfdldl.example_schema` needs: ``Features.feature`` map entries whose value is a
  ``BytesList``, a ``FloatList`` or an ``Int64List``, values packed or unpacked.

Every error names the file and the byte offset of the record concerned.

:func:`verify_shards` checks shards against the manifest's record of its build (size and
SHA-256 of each shard), so a shard damaged, truncated or copied in from another build is
refused by name before anything reads it; tfdldl.input_pipeline calls it too.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from tfdldl import example_schema as schema
from tfdldl.manifest import Manifest, ManifestError
from tfdldl.safe_io import file_sha256

_MASK_DELTA = 0xA282EAD8
_CRC32C_POLYNOMIAL = 0x82F63B78  # Castagnoli, reflected
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_GZIP_MAGIC = b"\x1f\x8b"

FeatureValue = Union[list, np.ndarray]


class TFRecordError(ValueError):
    """A TFRecord file that is truncated, corrupt or not in the expected schema."""


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


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLYNOMIAL if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c_python(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data`` with a 256-entry table; pure Python, ≈7.5 MB/s."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _compiled_crc32c() -> Optional[Callable[[bytes], int]]:
    """A compiled CRC32C function from an installed package, or None."""
    try:
        import google_crc32c

        if google_crc32c.implementation == "c":
            return google_crc32c.value
    except ImportError:
        pass
    try:
        import crc32c

        return crc32c.crc32c
    except ImportError:
        return None


COMPILED_CRC32C = _compiled_crc32c()


def crc32c(data: bytes) -> int:
    """CRC32C of ``data``: the compiled implementation when installed, else pure Python."""
    return (COMPILED_CRC32C or crc32c_python)(data)


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data`` (uint32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: str):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def iter_records(path: str | os.PathLike, verify_data: Optional[bool] = None
                 ) -> Iterator[tuple[int, bytes]]:
    """The records of one TFRecord file, in order.

    Args:
      path: a TFRecord file (uncompressed or GZIP).
      verify_data: check each record's data CRC: True always, False never, None when a
        compiled CRC32C is installed. Length CRCs are always checked.
    Yields:
      (offset, data): the byte offset of the record's header in the (uncompressed)
      stream, and the record's bytes.
    Raises:
      TFRecordError: a truncated record or a CRC mismatch, naming the file and offset.
      OSError: the file cannot be opened.
    """
    path = os.fspath(path)
    verify = COMPILED_CRC32C is not None if verify_data is None else verify_data
    offset = 0
    with _open(path) as stream:
        while True:
            header = stream.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                raise TFRecordError(f"{path}: truncated record header at byte {offset} "
                                    f"({len(header)} of {_HEADER.size} bytes); the file was "
                                    "cut short, rebuild this shard")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                raise TFRecordError(f"{path}: corrupt record length at byte {offset} (CRC "
                                    "mismatch); the file is damaged or not a TFRecord file, "
                                    "rebuild this shard")
            data = stream.read(length)
            footer = stream.read(_FOOTER.size)
            if len(data) < length or len(footer) < _FOOTER.size:
                raise TFRecordError(f"{path}: truncated record at byte {offset} (expected "
                                    f"{length} data bytes); the file was cut short, rebuild "
                                    "this shard")
            if verify and masked_crc(data) != _FOOTER.unpack(footer)[0]:
                raise TFRecordError(f"{path}: corrupt record data at byte {offset} (CRC "
                                    "mismatch); rebuild this shard")
            yield offset, data
            offset += _HEADER.size + length + _FOOTER.size


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``position``; returns (value, next position)."""
    result, shift = 0, 0
    while True:
        if position >= len(buffer):
            raise ValueError("varint runs past the end of the message")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buffer: bytes) -> Iterator[tuple[int, int, object]]:
    """Top-level fields of a protobuf message: (field number, wire type, value).

    The value is an int for varints, bytes for length-delimited fields and fixed32/64.
    """
    position, end = 0, len(buffer)
    while position < end:
        key, position = _varint(buffer, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(buffer, position)
        elif wire_type == 2:
            size, position = _varint(buffer, position)
            if position + size > end:
                raise ValueError(f"field {number} runs past the end of the message")
            value = buffer[position:position + size]
            position += size
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            if position + size > end:
                raise ValueError(f"field {number} runs past the end of the message")
            value = buffer[position:position + size]
            position += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {number})")
        yield number, wire_type, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _float_list(message: bytes) -> np.ndarray:
    chunks = []
    for number, wire_type, value in _fields(message):
        if number != 1:
            continue
        if wire_type == 2:  # packed
            if len(value) % 4:
                raise ValueError("packed float list whose size is not a multiple of 4")
            chunks.append(np.frombuffer(value, "<f4"))
        elif wire_type == 5:
            chunks.append(np.frombuffer(value, "<f4"))
        else:
            raise ValueError(f"float list value with wire type {wire_type}")
    return (np.concatenate(chunks) if chunks else np.zeros([0], "<f4")).astype(np.float32)


def _int64_list(message: bytes) -> np.ndarray:
    values = []
    for number, wire_type, value in _fields(message):
        if number != 1:
            continue
        if wire_type == 0:
            values.append(_signed64(value))
        elif wire_type == 2:  # packed
            position = 0
            while position < len(value):
                item, position = _varint(value, position)
                values.append(_signed64(item))
        else:
            raise ValueError(f"int64 list value with wire type {wire_type}")
    return np.asarray(values, np.int64)


def _bytes_list(message: bytes) -> list[bytes]:
    return [bytes(value) for number, wire_type, value in _fields(message)
            if number == 1 and wire_type == 2]


_KINDS = {1: _bytes_list, 2: _float_list, 3: _int64_list}


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example`` into plain Python/NumPy values.

    Returns:
      feature key -> list[bytes] (bytes_list), float32 [n] (float_list) or int64 [n]
      (int64_list). A feature with no kind set maps to an empty list.
    Raises:
      ValueError: the bytes are not a valid Example of these kinds.
    """
    features: dict[str, FeatureValue] = {}
    for number, _, body in _fields(data):
        if number != 1:  # Example.features
            continue
        for entry_number, _, entry in _fields(body):
            if entry_number != 1:  # Features.feature (map entry)
                continue
            key, value = None, []
            for field, wire_type, content in _fields(entry):
                if field == 1 and wire_type == 2:
                    key = bytes(content).decode("utf-8")
                elif field == 2 and wire_type == 2:
                    for kind, _, kind_body in _fields(content):
                        if kind in _KINDS:
                            value = _KINDS[kind](kind_body)
            if key is None:
                raise ValueError("a feature map entry without a key")
            features[key] = value
    return features


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

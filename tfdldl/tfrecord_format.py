"""TFRecord framing and tf.train.Example parsing without TensorFlow (for tfdldl.tfrecord_reader).

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
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import Callable, Iterator, Optional, Union

import numpy as np

_MASK_DELTA = 0xA282EAD8
_CRC32C_POLYNOMIAL = 0x82F63B78  # Castagnoli, reflected
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_GZIP_MAGIC = b"\x1f\x8b"

FeatureValue = Union[list, np.ndarray]


class TFRecordError(ValueError):
    """A TFRecord file that is truncated, corrupt or not in the expected schema."""


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

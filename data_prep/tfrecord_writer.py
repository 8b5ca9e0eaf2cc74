"""Serialise aligned faces as tf.train.Examples and write shards atomically."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import numpy as np
import tensorflow as tf

from tfdldl import example_schema as schema
from tfdldl.safe_io import atomic_path


@dataclasses.dataclass(frozen=True)
class FaceExample:
    """One aligned face, ready to serialise.

    Attributes:
      jpeg: JPEG bytes of the aligned face (RGB, square).
      image_size: side of the face in pixels.
      label: y in label units.
      sigma: σ in label units.
      distribution: float32 [K] Gaussian label distribution (sums to 1).
      subject: subject id or "".
      gender: 0, 1 or -1.
      group: the dataset's group code (UTKFace: race 0..4), -1 unknown.
      source: original image path relative to the dataset root.
      coverage: share of the aligned crop inside the source image, 0..1.
    """

    jpeg: bytes
    image_size: int
    label: float
    sigma: float
    distribution: np.ndarray
    subject: str = ""
    gender: int = -1
    source: str = ""
    group: int = -1
    coverage: float = 1.0


def serialize(example: FaceExample) -> bytes:
    """The ``tf.train.Example`` wire bytes of ``example`` (schema in tfdldl.example_schema)."""

    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def _floats(values) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values).tolist()))

    features = {
        schema.IMAGE: _bytes(example.jpeg),
        schema.IMAGE_SIZE: _int(example.image_size),
        schema.LABEL: _floats([example.label]),
        schema.SIGMA: _floats([example.sigma]),
        schema.DISTRIBUTION: _floats(np.asarray(example.distribution, np.float32)),
        schema.SUBJECT: _bytes(example.subject.encode("utf-8")),
        schema.GENDER: _int(example.gender),
        schema.GROUP: _int(example.group),
        schema.SOURCE: _bytes(example.source.encode("utf-8")),
        schema.COVERAGE: _floats([example.coverage]),
        schema.VERSION: _int(schema.SCHEMA_VERSION),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_shard(path: str, examples: Iterable[FaceExample], compression: Optional[str] = None) -> int:
    """Write ``examples`` to ``path`` via a fresh temporary file and an atomic rename.

    A shard that exists under its final name is therefore always complete; a killed
    write leaves only a hidden ``.<name>.partial-*`` file, which the next build deletes.
    The temporary file is created exclusively (tfdldl.safe_io), so a symbolic link planted
    in the folder is never written through.

    Returns:
      The number of examples written.
    """
    count = 0
    with atomic_path(path) as temporary:
        with tf.io.TFRecordWriter(temporary, options=compression) as writer:
            for example in examples:
                writer.write(serialize(example))
                count += 1
    return count

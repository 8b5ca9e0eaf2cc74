"""Serialise aligned faces as tf.train.Examples and write shards atomically."""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import tensorflow as tf

from tfdldl import example_schema as schema
from tfdldl.safe_io import atomic_path


def serialize(example: schema.FaceRecord) -> bytes:
    """The ``tf.train.Example`` wire bytes of ``example``: every feature of the schema table
    (tfdldl.example_schema.FEATURES), schema_version always the current one."""
    features = {}
    for entry in schema.FEATURES:
        value = schema.SCHEMA_VERSION if entry.key == schema.VERSION else example.value(entry.key)
        if entry.dtype in ("bytes", "text"):
            data = value.encode("utf-8") if entry.dtype == "text" else value
            features[entry.key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
        elif entry.dtype == "int":
            features[entry.key] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            features[entry.key] = tf.train.Feature(float_list=tf.train.FloatList(
                value=np.ravel(np.asarray(value, np.float32)).tolist()))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_shard(path: str, examples: Iterable[schema.FaceRecord],
                compression: Optional[str] = None) -> int:
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

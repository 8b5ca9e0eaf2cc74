"""``tf.io.parse_example`` specs of the face schema (tfdldl.example_schema.FEATURES).

The tf.data input pipeline, the training's label read and data_prep's contact sheet parse
records with these specs, so the table's dtypes, shapes and defaults hold everywhere.
Imports TensorFlow (and nothing heavier).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfdldl import example_schema
def feature_spec(keys: Sequence[str], num_classes: int = 0) -> dict[str, tf.io.FixedLenFeature]:
    """How ``tf.io.parse_example`` reads the schema features ``keys``
    (tfdldl.example_schema.FEATURES: dtype, shape, default; a per-class feature has
    ``num_classes`` values).

    Raises:
      KeyError: a key that is not in the schema.
    """
    dtypes = {"bytes": tf.string, "text": tf.string, "int": tf.int64, "float": tf.float32}
    spec = {}
    for key in keys:
        entry = example_schema.feature(key)
        shape = [num_classes] if entry.shape else []
        spec[key] = tf.io.FixedLenFeature(shape, dtypes[entry.dtype],
                                          default_value=entry.default)
    return spec

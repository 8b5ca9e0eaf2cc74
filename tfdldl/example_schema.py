"""The TFRecord schema shared by the writer (data_prep), tf.data and the TF-free reader.

One ``tf.train.Example`` per aligned face. :data:`FEATURES` is the one table of its
features (key, dtype, shape, default); the writer (data_prep.tfrecord_writer.serialize),
the TF-free reader (tfdldl.tfrecord_reader.decode_face), tf.data's parse spec
(tfdldl.input_pipeline.feature_spec, also used by the contact sheet and the training's
label read) and :class:`FaceRecord`, the one face record type on both sides of the
TFRecord, all follow it; so do the reader's in-memory columns
(tfdldl.tfrecord_reader.FaceArrays) and data_prep's record before alignment
(data_prep.adapters.base.Record, which hands FaceRecord every feature it carries). Nothing
in this module imports TensorFlow.

| key            | dtype  | shape | default | meaning                                       |
|----------------|--------|-------|---------|-----------------------------------------------|
| image/encoded  | bytes  | []    | —       | JPEG of the aligned face, RGB                 |
| image/size     | int    | []    | —       | side of the square aligned face, pixels       |
| label          | float  | []    | —       | y, in label units (years, rating points)      |
| sigma          | float  | []    | 0       | σ of the label distribution, label units      |
| distribution   | float  | [K]   | —       | precomputed Gaussian label distribution,      |
|                |        |       |         | sums to 1 (K: the manifest's label space)     |
| subject        | text   | []    | ""      | subject id ("" when unknown)                  |
| gender         | int    | []    | -1      | 0 male, 1 female, -1 unknown                  |
| group          | int    | []    | -1      | dataset-defined group code (UTKFace: race     |
|                |        |       |         | 0..4), -1 unknown; names in the manifest      |
| source         | text   | []    | ""      | the original image path, relative to the root |
| coverage       | float  | []    | -1      | share of the aligned crop inside the source,  |
|                |        |       |         | 0..1 (-1: not recorded)                       |
| schema_version | int    | []    | 0       | SCHEMA_VERSION at write time                  |

"—": required (a record without it is refused). "text" is UTF-8 stored as bytes. A reader
gives the default for a feature a record lacks (records written before it existed).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

IMAGE = "image/encoded"
IMAGE_SIZE = "image/size"
LABEL = "label"
SIGMA = "sigma"
DISTRIBUTION = "distribution"
SUBJECT = "subject"
GENDER = "gender"
GROUP = "group"
SOURCE = "source"
COVERAGE = "coverage"
VERSION = "schema_version"

# The dtypes of the table; "text" is stored as UTF-8 bytes.
DTYPES = ("bytes", "text", "int", "float")
# The shape entry of a feature with one value per label-grid point.
PER_CLASS = "K"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature of the Example.

    Attributes:
      key: its name in the Example.
      field: the :class:`FaceRecord` attribute that holds it.
      dtype: one of :data:`DTYPES`.
      shape: () for one value, (PER_CLASS,) for one per label-grid point.
      default: what a reader gives when a record lacks it; None = required.
      codes: the names of an int feature's codes 0, 1, ... when the schema fixes them
        (gender); () = any (group: the dataset's manifest names them).
    """

    key: str
    field: str
    dtype: str
    shape: tuple = ()
    default: Any = None
    codes: tuple[str, ...] = ()


FEATURES: tuple[Feature, ...] = (
    Feature(IMAGE, "jpeg", "bytes"),
    Feature(IMAGE_SIZE, "image_size", "int"),
    Feature(LABEL, "label", "float"),
    Feature(SIGMA, "sigma", "float", default=0.0),
    Feature(DISTRIBUTION, "distribution", "float", (PER_CLASS,)),
    Feature(SUBJECT, "subject", "text", default=""),
    Feature(GENDER, "gender", "int", default=-1, codes=("male", "female")),
    Feature(GROUP, "group", "int", default=-1),
    Feature(SOURCE, "source", "text", default=""),
    Feature(COVERAGE, "coverage", "float", default=-1.0),
    Feature(VERSION, "schema_version", "int", default=0),
)
BY_KEY: dict[str, Feature] = {feature.key: feature for feature in FEATURES}


def feature(key: str) -> Feature:
    """The table's entry for ``key`` (KeyError naming the known keys)."""
    if key not in BY_KEY:
        raise KeyError(f"{key!r} is not a feature of the tfdldl face schema; it has "
                       f"{', '.join(BY_KEY)}")
    return BY_KEY[key]


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """One aligned face: what data_prep writes and what the readers decode (one field per
    row of :data:`FEATURES`; the writer always writes the current SCHEMA_VERSION).

    Attributes:
      jpeg: JPEG bytes of the aligned face (RGB, square).
      image_size: side of the face in pixels.
      label: y in label units.
      sigma: σ in label units.
      distribution: float32 [K] Gaussian label distribution (sums to 1).
      subject: subject id or "".
      gender: 0, 1 or -1.
      source: original image path relative to the dataset root.
      group: the dataset's group code (UTKFace: race 0..4), -1 unknown.
      coverage: share of the aligned crop inside the source image, 0..1; -1 not recorded.
      schema_version: the writer's SCHEMA_VERSION (read back from the record).
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
    coverage: float = -1.0
    schema_version: int = SCHEMA_VERSION

    def value(self, key: str) -> Any:
        """The value of feature ``key``."""
        return getattr(self, feature(key).field)


MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val", "test")


def shard_name(split: str, index: int, count: int) -> str:
    """File name of shard ``index`` (0-based) of ``count`` for ``split``."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"

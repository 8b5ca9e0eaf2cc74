"""The TFRecord schema shared by the writer (data_prep), tf.data and the TF-free reader.

One ``tf.train.Example`` per aligned face. Keys and types live here only; nothing in
this module imports TensorFlow.

| key            | type           | meaning                                              |
|----------------|----------------|------------------------------------------------------|
| image/encoded  | bytes          | JPEG of the aligned face, RGB                        |
| image/size     | int64          | side of the square aligned face, pixels              |
| label          | float          | y, in label units (years, rating points)             |
| sigma          | float          | σ of the label distribution, label units             |
| distribution   | float[K]       | precomputed Gaussian label distribution, sums to 1   |
| subject        | bytes          | subject id ("" when unknown)                         |
| gender         | int64          | 0 male, 1 female, -1 unknown                         |
| group          | int64          | dataset-defined group code (UTKFace: race 0..4), -1  |
|                |                | unknown; names in the manifest's "group" section     |
| source         | bytes          | the original image path, relative to the data root   |
| coverage       | float          | share of the aligned crop inside the source, 0..1    |
|                |                | (-1: written before coverage was recorded)           |
| schema_version | int64          | SCHEMA_VERSION at write time                         |
"""

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

BYTES_FEATURES = (IMAGE, SUBJECT, SOURCE)
INT_FEATURES = (IMAGE_SIZE, GENDER, GROUP, VERSION)
FLOAT_FEATURES = (LABEL, SIGMA, COVERAGE)  # scalars; DISTRIBUTION is float[K]

MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val", "test")


def shard_name(split: str, index: int, count: int) -> str:
    """File name of shard ``index`` (0-based) of ``count`` for ``split``."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"

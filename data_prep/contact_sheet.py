"""A PNG grid of aligned faces read back from finished shards, for a person to check alignment."""

from __future__ import annotations

import math
import os
from typing import Sequence

import cv2
import numpy as np
import tensorflow as tf

from tfdldl import example_schema as schema
from tfdldl.example_spec import feature_spec
from tfdldl.safe_io import atomic_path

TILE = 112  # pixels per face in the sheet


def read_faces(shard_paths: Sequence[str], count: int) -> list[tuple[np.ndarray, float, float]]:
    """Up to ``count`` (aligned face uint8 RGB [S, S, 3], label, coverage 0..1 or -1 when
    not recorded) triples, spread over the shards."""
    if count <= 0 or not shard_paths:
        return []
    per_shard = max(1, math.ceil(count / len(shard_paths)))
    features = feature_spec([schema.IMAGE, schema.LABEL, schema.COVERAGE])
    faces = []
    for path in shard_paths:
        for record in tf.data.TFRecordDataset(path).take(per_shard):
            example = tf.io.parse_single_example(record, features)
            jpeg = np.frombuffer(example[schema.IMAGE].numpy(), np.uint8)
            rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            faces.append((rgb, float(example[schema.LABEL].numpy()),
                          float(example[schema.COVERAGE].numpy())))
            if len(faces) == count:
                return faces
    return faces


def write_contact_sheet(shard_paths: Sequence[str], path: str, count: int = 64,
                        columns: int = 8) -> str | None:
    """Write a grid of up to ``count`` faces from ``shard_paths``, each captioned with its
    label and (when recorded) the share of its crop that lies inside the source photo.

    Returns:
      ``path``, or None when the shards hold no face (nothing is written).
    """
    faces = read_faces(shard_paths, count)
    if not faces:
        return None
    columns = min(columns, len(faces))
    rows = math.ceil(len(faces) / columns)
    sheet = np.zeros((rows * TILE, columns * TILE, 3), np.uint8)
    for i, (face, label, coverage) in enumerate(faces):
        tile = cv2.resize(face, (TILE, TILE), interpolation=cv2.INTER_AREA)
        caption = f"{label:g}" + (f"  cov {100 * coverage:.0f}%" if coverage >= 0 else "")
        cv2.putText(tile, caption, (3, TILE - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 0), 1, cv2.LINE_AA)
        row, column = divmod(i, columns)
        sheet[row * TILE:(row + 1) * TILE, column * TILE:(column + 1) * TILE] = tile
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, suffix=".png") as partial:  # never through a planted link
        if not cv2.imwrite(partial, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"OpenCV could not write the contact sheet {path}")
    return path

"""The predictions of a model on one TFRecord split, read as training read it.

:func:`collect_predictions` runs a :class:`tfdldl.inference.Predictor` over a split (each
face averaged with its mirror, the paper's test protocol, unless ``flip=False``) and keeps
what evaluation needs: labels, σ, gender and group codes, predictions and the faces' JPEGs.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Iterator

import numpy as np

from tfdldl import example_schema as schema
from tfdldl import tfrecord_reader
from tfdldl.inference import Predictor, predict_flip_averaged
from tfdldl.manifest import Manifest
from tfdldl.output_names import GENDER_PROBABILITY

# Unknown gender / group code in the records.
UNKNOWN_CODE = -1


@dataclasses.dataclass
class SplitPredictions:
    """Everything evaluated on one split, in record order.

    Attributes:
      true: float32 [N] labels.
      sigma: float32 [N] σ stored with each record.
      value: float32 [N] predictions.
      stddev: float32 [N] predicted standard deviations (NaN without a distribution).
      distribution: float32 [N, K] predicted distributions, or None.
      encoded: N encoded aligned faces (JPEG bytes) for the face grid.
      gender: int32 [N], 0 male, 1 female, -1 unknown.
      group: int32 [N], the data's group codes (UTKFace: race), -1 unknown.
      gender_probability: float32 [N, C] predicted by a model with the gender head, or None.
    """

    true: np.ndarray
    sigma: np.ndarray
    value: np.ndarray
    stddev: np.ndarray
    distribution: np.ndarray | None
    encoded: list[bytes]
    gender: np.ndarray
    group: np.ndarray
    gender_probability: np.ndarray | None = None


def decode_jpegs(encoded: list[bytes]) -> np.ndarray:
    """Aligned-face JPEGs -> float32 [N, S, S, 3] RGB 0..255, decoded as training, predict and
    serving decode them (tfdldl.image_io's rules; tests/test_decoder_parity.py)."""
    from tfdldl.image_io import decode_rgb

    return np.stack([decode_rgb(data, f"record {i}", jpeg_warnings=False)
                     for i, data in enumerate(encoded)]).astype(np.float32)


def read_split(manifest: Manifest, split: str, batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of one split in file order: {"encoded", "image", "label", "sigma"}.

    Records come from :func:`tfdldl.tfrecord_reader.read_split` (which checks CRCs and the
    manifest's record count); images are decoded by :func:`decode_jpegs`, so evaluation
    sees the pixels training saw.

    Args:
      manifest: the TFRecord folder.
      split: split name; a missing or empty split raises ManifestError.
      batch_size: records per batch (the last may be smaller).
    Yields:
      "encoded": list of B JPEG bytes; "image": float32 [B, S, S, 3] RGB 0..255;
      "label", "sigma": float32 [B]; "gender", "group": int32 [B].
    """
    faces = tfrecord_reader.read_split(manifest, split)
    for start in range(0, len(faces), batch_size):
        stop = start + batch_size
        encoded = faces.jpegs[start:stop]
        yield {"encoded": encoded, "image": decode_jpegs(encoded),
               **{key: faces.field(key)[start:stop]
                  for key in (schema.LABEL, schema.SIGMA, schema.GENDER, schema.GROUP)}}


def collect_predictions(predictor: Predictor, manifest: Manifest, split: str,
                        batch_size: int = 64, flip: bool = True,
                        progress: bool = False) -> SplitPredictions:
    """Run ``predictor`` over a whole split (flip-averaged when ``flip``).

    ``progress`` shows a bar over the split's faces on stderr.
    """
    from tqdm import tqdm

    parts: dict[str, list] = {"true": [], "sigma": [], "value": [], "stddev": [],
                              "distribution": [], "encoded": [], "gender": [], "group": [],
                              GENDER_PROBABILITY: []}
    bar = tqdm(total=manifest.counts.get(split), unit="face", disable=not progress,
               file=sys.stderr, desc=f"evaluating {split}", leave=False)
    for batch in read_split(manifest, split, batch_size):
        outputs = (predict_flip_averaged(predictor, batch["image"]) if flip
                   else predictor.predict_images(batch["image"]))
        bar.update(len(batch["label"]))
        parts["true"].append(batch["label"])
        parts["sigma"].append(batch["sigma"])
        parts["gender"].append(batch["gender"])
        parts["group"].append(batch["group"])
        parts["value"].append(outputs["value"].reshape(-1))
        parts["stddev"].append(outputs["stddev"].reshape(-1))
        for key in ("distribution", GENDER_PROBABILITY):
            if key in outputs:
                parts[key].append(outputs[key])
        parts["encoded"].extend(batch["encoded"])
    bar.close()
    return SplitPredictions(
        true=np.concatenate(parts["true"]).astype(np.float32),
        sigma=np.concatenate(parts["sigma"]).astype(np.float32),
        value=np.concatenate(parts["value"]).astype(np.float32),
        stddev=np.concatenate(parts["stddev"]).astype(np.float32),
        distribution=(np.concatenate(parts["distribution"]).astype(np.float32)
                      if parts["distribution"] else None),
        encoded=parts["encoded"],
        gender=_codes(parts["gender"], len(parts["encoded"])),
        group=_codes(parts["group"], len(parts["encoded"])),
        gender_probability=(np.concatenate(parts[GENDER_PROBABILITY]).astype(np.float32)
                            if parts[GENDER_PROBABILITY] else None))


def _codes(chunks: list[np.ndarray], count: int) -> np.ndarray:
    """int32 [count] codes; all unknown when the reader gave none (records without them)."""
    codes = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros(0, np.int32)
    return codes if len(codes) == count else np.full(count, UNKNOWN_CODE, np.int32)

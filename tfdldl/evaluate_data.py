"""The predictions of a model on one TFRecord split, read as training read it.

:func:`collect_predictions` runs a :class:`tfdldl.inference.Predictor` over a split (each
face averaged with its mirror, the paper's test protocol, unless ``flip=False``) and keeps
what evaluation needs: labels, σ, the records' codes (gender, group), predictions (with
every categorical head's probabilities) and the faces' JPEGs.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Any, Iterator

import numpy as np

from tfdldl import example_schema as schema
from tfdldl import tfrecord_reader
from tfdldl.inference import Predictor, predict_flip_averaged
from tfdldl.heads_config import CODE_ATTRIBUTES
from tfdldl.manifest import Manifest
from tfdldl.output_names import categorical_head_of

# An unknown code in the records (tfdldl.example_schema: gender, group).
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
      codes: {record feature: int32 [N] codes, -1 unknown} for each of the schema's
        code features (tfdldl.heads_config.CODE_ATTRIBUTES: "gender" 0 male, 1 female;
        "group", the data's groups, UTKFace's race).
      probabilities: {"<name>_probability": float32 [N, C]} predicted by each categorical
        head of the model; {} for an age-only model.
    """

    true: np.ndarray
    sigma: np.ndarray
    value: np.ndarray
    stddev: np.ndarray
    distribution: np.ndarray | None
    encoded: list[bytes]
    codes: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


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
      "label", "sigma": float32 [B]; each code feature ("gender", "group"): int32 [B].
    """
    faces = tfrecord_reader.read_split(manifest, split)
    for start in range(0, len(faces), batch_size):
        stop = start + batch_size
        encoded = faces.jpegs[start:stop]
        yield {"encoded": encoded, "image": decode_jpegs(encoded),
               **{key: faces.field(key)[start:stop]
                  for key in (schema.LABEL, schema.SIGMA, *CODE_ATTRIBUTES)}}


def collect_predictions(predictor: Predictor, manifest: Manifest, split: str,
                        batch_size: int = 64, flip: bool = True,
                        progress: bool = False) -> SplitPredictions:
    """Run ``predictor`` over a whole split (flip-averaged when ``flip``).

    ``progress`` shows a bar over the split's faces on stderr.
    """
    from tqdm import tqdm

    parts: dict[str, list] = collections.defaultdict(list)
    bar = tqdm(total=manifest.counts.get(split), unit="face", disable=not progress,
               file=sys.stderr, desc=f"evaluating {split}", leave=False)
    for batch in read_split(manifest, split, batch_size):
        outputs = (predict_flip_averaged(predictor, batch["image"]) if flip
                   else predictor.predict_images(batch["image"]))
        bar.update(len(batch["label"]))
        parts["true"].append(batch["label"])
        parts["sigma"].append(batch["sigma"])
        for key in CODE_ATTRIBUTES:
            parts[key].append(batch[key])
        parts["value"].append(outputs["value"].reshape(-1))
        parts["stddev"].append(outputs["stddev"].reshape(-1))
        for key in outputs:
            if key == "distribution" or categorical_head_of(key):
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
        codes={key: _codes(parts[key], len(parts["encoded"])) for key in CODE_ATTRIBUTES},
        probabilities={key: np.concatenate(chunks).astype(np.float32)
                       for key, chunks in parts.items() if categorical_head_of(key)})


def _codes(chunks: list[np.ndarray], count: int) -> np.ndarray:
    """int32 [count] codes; all unknown when the reader gave none (records without them)."""
    codes = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros(0, np.int32)
    return codes if len(codes) == count else np.full(count, UNKNOWN_CODE, np.int32)

"""From aligned face crops to tfdldl.predict's rows: batched model passes (each face
averaged with its mirror image), then one :class:`~tfdldl.predict_output.FaceRow` per face
with value, stddev, central interval, categorical classes and warnings."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tfdldl.inference import Predictor, central_interval, predict_flip_averaged
from tfdldl.output_names import DISTRIBUTION, STDDEV, VALUE, categorical_head_of
from tfdldl.predict_inputs import Frame
from tfdldl.predict_output import STATUS_FACE, STATUS_NO_FACE, FaceRow

# With --aligned, images whose shorter side is below this share of the model's face size
# get a warning: upsampled that far, they carry little of what the model saw in training.
SMALL_FACE_SHARE = 0.25


def predict_in_batches(predictor: Predictor, crops: list[np.ndarray],
                       batch_size: int, flip: bool = True) -> dict[str, np.ndarray]:
    """Model outputs for uint8 [S, S, 3] crops, ``batch_size`` faces per forward pass,
    each averaged with its mirror image when ``flip`` (the paper's test protocol)."""
    run = (lambda images: predict_flip_averaged(predictor, images)) if flip \
        else predictor.predict_images
    parts = [run(np.stack(crops[start:start + batch_size]).astype(np.float32))
             for start in range(0, len(crops), batch_size)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]} if parts else {}


def face_rows(frames: list[Frame], faces: list, outputs: dict[str, np.ndarray],
              predictor: Predictor, aligner, aligned: bool,
              interval_mass: float) -> list[list[FaceRow]]:
    """Rows for each frame: one per face, or a single "no_face" row.

    Args:
      frames: the pictures.
      faces: (box, confidence, crop) per face, per frame (best face first).
      outputs: the calibrated model outputs of all faces in that order ("value" [F],
        "stddev" [F], and "distribution" [F, K] when the model has one).
      predictor: the loaded model (label grid, face size, class names).
      aligner: the FaceAligner that searched the frames (says why a small frame has none).
      aligned: the frames were aligned faces (warn about tiny ones).
      interval_mass: probability inside the reported [low, high] interval.
    """
    has_interval = DISTRIBUTION in outputs
    if has_interval:
        low, high = central_interval(outputs[DISTRIBUTION], predictor.label_space.grid,
                                     interval_mass)
    classes = face_classes(outputs, predictor.class_names)
    rows, position = [], 0
    for frame, per_frame in zip(frames, faces):
        if not per_frame:
            rows.append([FaceRow(frame.name, STATUS_NO_FACE,
                                 message=_too_small_for_faces(frame, aligner))])
            continue
        frame_rows = []
        for index, (box, confidence, _) in enumerate(per_frame):
            frame_rows.append(FaceRow(
                frame.name, STATUS_FACE, face=index,
                x=box[0], y=box[1], width=box[2], height=box[3],
                value=float(outputs[VALUE][position]),
                stddev=_finite(outputs[STDDEV][position]),
                low=float(low[position]) if has_interval else None,
                high=float(high[position]) if has_interval else None,
                confidence=confidence, classes=classes[position],
                message=_size_warning(frame, predictor.face_size) if aligned else ""))
            position += 1
        rows.append(frame_rows)
    return rows


def face_classes(outputs: dict[str, np.ndarray],
                 class_names: dict[str, Sequence[str]]) -> list[dict[str, tuple[str, float]]]:
    """Per face, {categorical head: (its most probable class name, that probability 0..1)}.

    Args:
      outputs: model outputs; ``outputs["value"]`` [N] and, per categorical head,
        ``outputs["<head>_probability"]`` float [N, C] class probabilities.
      class_names: {probability output: its C class names in column order}
        (Predictor.class_names); an output missing from ``outputs`` is left out.
    Returns:
      N dicts (empty for a model without categorical heads).
    """
    per_face: list[dict[str, tuple[str, float]]] = [{} for _ in outputs.get(VALUE, ())]
    for output, names in class_names.items():
        if output not in outputs:
            continue
        probabilities = np.asarray(outputs[output], np.float64)
        head = categorical_head_of(output)
        for classes, row, best in zip(per_face, probabilities, np.argmax(probabilities, -1)):
            classes[head] = (names[best], float(row[best]))
    return per_face


def _size_warning(frame: Frame, face_size: int) -> str:
    """A warning for an --aligned image far smaller than the model's faces, else ""."""
    height, width = frame.rgb.shape[:2]
    if min(height, width) >= SMALL_FACE_SHARE * face_size:
        return ""
    return (f"warning: a {width}x{height} px image is far smaller than the {face_size} px "
            "faces the model was trained on; this prediction is unreliable")


def _too_small_for_faces(frame: Frame, aligner) -> str:
    """Why no face can be found in a picture smaller than the smallest face searched, or ""."""
    height, width = frame.rgb.shape[:2]
    smallest = aligner.smallest_face(frame.rgb.shape)
    if min(height, width) >= smallest:
        return ""
    return (f"the image is {width}x{height} px, smaller than the smallest face looked for "
            f"({smallest:.0f} px; --min_face_size)")


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None

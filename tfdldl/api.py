"""The Python API: one call from a photo to the ages of its faces.

    >>> import tfdldl
    >>> estimator = tfdldl.AgeEstimator()          # the shipped model, highest version
    >>> for face in estimator.predict("photo.jpg"):
    ...     print(face.box, round(face.age), face.interval)
    ...     print(face.classes)  # {"gender": ("female", 0.93)} for a model with that head

:class:`AgeEstimator` runs the same MTCNN detector, alignment, model and calibrated
interval as ``python -m tfdldl.predict`` (it uses that module's code).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

from tfdldl.output_names import CONFIDENCE_SUFFIX

# The model shipped in this repository (its highest version is used).
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "saved_models", "utkface_tinyagenet")
# An environment variable that replaces the shipped model as the default.
MODEL_ENV = "TFDLDL_MODEL"

Photo = Union[str, os.PathLike, np.ndarray]


def resolve_model(model: str | os.PathLike | None = None) -> str:
    """The model to load: ``model``, else $TFDLDL_MODEL, else the shipped model folder.

    Raises:
      tfdldl.inference.ModelLoadError: no model given and the shipped one is missing (an
        installed copy without the repository's saved_models/).
    """
    from tfdldl.inference import ModelLoadError

    if model:
        return os.fspath(model)
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    if not os.path.isdir(SHIPPED_MODEL):
        raise ModelLoadError(f"no model given and the shipped model {SHIPPED_MODEL} is not "
                             "there (tfdldl was installed without the repository's "
                             f"saved_models/); pass --model / model=, or set ${MODEL_ENV}")
    return SHIPPED_MODEL


@dataclasses.dataclass(frozen=True)
class Face:
    """One face found in a photo.

    Attributes:
      box: (x, y, width, height) of the detection in the photo, pixels.
      value: the prediction, label units (years for an age model; also ``age``).
      stddev: standard deviation of the (calibrated) predicted distribution, label units.
      interval: (low, high), the central interval holding ``AgeEstimator.interval`` of
        the calibrated distribution, label units.
      confidence: the detector's face probability 0..1 (None for aligned input).
      warning: "" or why this prediction is unreliable.
      classes: {categorical head name: (its most probable class name, from the model's
        class names; that class's predicted probability, 0..1)}; {} for an age-only model.
        Each head also reads as attributes: ``face.gender`` (the name) and
        ``face.gender_confidence`` (the probability) for a model with a head "gender";
        AttributeError for a head the model lacks.
    """

    box: tuple[float, float, float, float]
    value: float
    stddev: float | None
    interval: tuple[float, float] | None
    confidence: float | None
    warning: str = ""
    classes: Mapping[str, tuple[str, float]] = dataclasses.field(default_factory=dict,
                                                                 hash=False)

    def __getattr__(self, name: str):
        """``face.<head>`` and ``face.<head>_confidence`` of a categorical head."""
        if name.startswith("_") or name == "classes":
            raise AttributeError(name)
        head = name.removesuffix(CONFIDENCE_SUFFIX)
        if head in self.classes:
            return self.classes[head][int(head != name)]
        raise AttributeError(f"Face has no attribute {name!r}; the model's categorical heads "
                             f"are {sorted(self.classes)}")

    @property
    def age(self) -> float:
        """The predicted age in years (the ``value`` of an age model)."""
        return self.value


class AgeEstimator:
    """Detect, align and predict every face in photos.

    Args:
      model: a SavedModel folder (``saved_models/<name>`` for its highest version, or a
        version folder) or a .keras file; default :func:`resolve_model`.
      interval: probability inside each face's interval, in (0, 1).
      min_face_size: smallest face the detector looks for, pixels; None (the default)
        searches faces down to 1/16 of each photo's shorter side (at least 20 px), as
        ``tfdldl.predict`` does.
      batch_size: photos detected together and faces per forward pass.
    Raises:
      tfdldl.inference.ModelLoadError: the model cannot be loaded (the message says why).
      ValueError: ``interval`` outside (0, 1), or ``batch_size`` below 1 (before the model
        is loaded).
    """

    def __init__(self, model: str | os.PathLike | None = None, interval: float = 0.9,
                 min_face_size: int | None = None, batch_size: int = 32):
        from tfdldl.cli import import_tensorflow_quietly

        if not 0.0 < interval < 1.0:
            raise ValueError(f"interval must lie in (0, 1), got {interval}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1 (photos per detection batch), "
                             f"got {batch_size}")
        # As the commands do (a user's settings win): TensorFlow's loading chatter kept
        # off the terminal, its oneDNN kernels asked for.
        import_tensorflow_quietly()
        from tfdldl.inference import aligner_for, load_predictor

        self.predictor = load_predictor(resolve_model(model))
        self.aligner = aligner_for(self.predictor, min_face_size=min_face_size)
        self.interval = float(interval)
        self.batch_size = int(batch_size)

    @property
    def model_path(self) -> str:
        """The version folder (or file) actually loaded."""
        return self.predictor.source

    def predict(self, photo: Photo, aligned: bool = False) -> list[Face]:
        """The faces of one photo, most confident first ([] when none is found).

        Args:
          photo: an image path, or a uint8 RGB array [H, W, 3].
          aligned: the photo is an aligned face already (no detection).
        Raises:
          tfdldl.image_io.ImageReadError: the path is not a readable image.
          ValueError: an array that is not [H, W, 3].
        """
        return self.predict_many([photo], aligned)[0]

    def predict_many(self, photos: Iterable[Photo], aligned: bool = False) -> list[list[Face]]:
        """:meth:`predict` for each photo, detected and predicted in batches."""
        from tfdldl import predict

        frames = [predict.Frame(str(i), _as_rgb(photo)) for i, photo in enumerate(photos)]
        faces: list[list[Face]] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start:start + self.batch_size]
            rows = predict.predict_frames(chunk, self.predictor, self.aligner, aligned,
                                          self.interval, self.batch_size)
            faces.extend([_face(row) for row in per_frame if row.status == predict.STATUS_FACE]
                         for per_frame in rows)
        return faces


def _as_rgb(photo: Photo) -> np.ndarray:
    from tfdldl.image_io import read_rgb

    if isinstance(photo, np.ndarray):
        if photo.ndim != 3 or photo.shape[-1] != 3 or photo.dtype != np.uint8:
            raise ValueError(f"a photo array must be uint8 RGB [H, W, 3], got {photo.dtype} "
                             f"{photo.shape} (OpenCV's BGR: cv2.cvtColor(image, "
                             "cv2.COLOR_BGR2RGB))")
        return np.ascontiguousarray(photo)
    return read_rgb(os.fspath(photo))


def _face(row) -> Face:
    return Face(box=(row.x, row.y, row.width, row.height), value=row.value,
                stddev=row.stddev,
                interval=None if row.low is None else (row.low, row.high),
                confidence=row.confidence, warning=row.message, classes=dict(row.classes))


__all__: Sequence[str] = ("AgeEstimator", "Face", "resolve_model", "SHIPPED_MODEL")

"""One way to run a trained model, whatever it was saved as: SavedModel folder or ``.keras`` file.

``tfdldl.predict``, ``tfdldl.evaluate``, ``tfdldl.tflite_export`` and ``tfdldl.bench`` all
load models through :func:`load_predictor`, so every tool reads the same outputs
(``value``, ``stddev``, ``distribution``) and the same label space from a model.

Also here: summaries of a predicted distribution (standard deviation, central interval
from the CDF) and test-time flip averaging (the paper averages a face and its mirror).
"""

from __future__ import annotations

import os
import re
from typing import Protocol, Sequence

import numpy as np

from tfdldl.face_align import Framing
from tfdldl.label_space import LabelSpace


# Key of the exported config that records how the training faces were made
# (tfdldl.manifest.Manifest.face_alignment).
TRAINING_FACES_KEY = "training_faces"
# A .keras file's record of its training faces lies beside it under this suffix.
TRAINING_FACES_SUFFIX = ".training_faces.json"


class ModelLoadError(ValueError):
    """A --model path that is not a usable tfdldl model; the message says what to pass."""


class Predictor(Protocol):
    """What the tools need from a loaded model.

    Attributes:
      label_space: the model's label grid.
      input_size: side of the square face crop the network was built for, pixels.
      face_size: side of the aligned faces the model was trained from, pixels (the
        TFRecords' image_size; the model resized them to input_size). Align new photos at
        this size so inference sees the faces training saw. Equals input_size when the
        model does not record it (a bare .keras file).
      framing: the alignment framing of the training faces (tfdldl.face_align.Framing);
        photos must be aligned with it. None when the model does not record it (a .keras
        file without its training-faces file, a .tflite file).
      source: the path it was loaded from.
      temperature: the calibration temperature of the predicted distribution
        (tfdldl.calibration; 1.0 when the model is not calibrated).
      class_names: {probability output: its class names in column order}, e.g.
        {"gender_probability": ["male", "female"]}; {} when the model has no categorical
        head (tfdldl.heads_categorical).
      class_attributes: {probability output: the record feature its head predicts}, e.g.
        {"race_probability": "group"}.
    """

    label_space: LabelSpace
    input_size: int
    face_size: int
    framing: Framing | None
    source: str
    temperature: float
    class_names: dict[str, list[str]]
    class_attributes: dict[str, str]

    def predict_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [N, H, W, 3] RGB 0..255 -> {"value": [N], "stddev": [N], "distribution": [N, K]}."""

    def predict_encoded(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """JPEG/PNG bytes of aligned faces -> the same dict (the ``serving_default`` path)."""


def distribution_stddev(distribution: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """:func:`tfdldl.layers.distribution_stddev` (the exported models' formula) on NumPy arrays.

    Args:
      distribution: float [N, K], rows sum to 1.
      grid: float [K], the label values l_k.
    Returns:
      float32 [N], label units.
    """
    import keras

    from tfdldl import layers

    stddev = layers.distribution_stddev(np.asarray(distribution, np.float32), grid)
    return keras.ops.convert_to_numpy(stddev).astype(np.float32)


def central_interval(distribution: np.ndarray, grid: np.ndarray,
                     mass: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """The central ``mass`` interval of each distribution, read off its CDF.

    The lower end is the smallest grid value whose CDF reaches (1 - mass) / 2, the upper
    end the smallest whose CDF reaches (1 + mass) / 2; so at least ``mass`` of the
    probability lies in [low, high] (grid values, no interpolation).

    Args:
      distribution: float [N, K], rows sum to 1.
      grid: float [K], increasing label values.
      mass: probability inside the interval, in (0, 1).
    Returns:
      (low, high), each float32 [N], label units.
    """
    if not 0.0 < mass < 1.0:
        raise ValueError(f"interval mass must lie in (0, 1), got {mass}")
    cdf = np.cumsum(np.asarray(distribution, np.float64), axis=-1)
    cdf /= cdf[:, -1:]
    grid = np.asarray(grid, np.float32)
    tail = (1.0 - mass) / 2.0
    low = np.argmax(cdf >= tail - 1e-9, axis=-1)
    high = np.argmax(cdf >= 1.0 - tail - 1e-9, axis=-1)
    return grid[low], grid[high]


def predict_flip_averaged(predictor: Predictor, images: np.ndarray) -> dict[str, np.ndarray]:
    """Average the predictions for ``images`` and their horizontal mirrors (the paper's test).

    Args:
      predictor: a loaded model.
      images: float32 [N, H, W, 3] RGB 0..255.
    Returns:
      {"value": [N], "stddev": [N], "distribution": [N, K]}: as the SavedModel's
      ``serving_flip_averaged`` (:func:`tfdldl.heads.flip_average`): values and
      distributions averaged, stddev recomputed from the averaged distribution (NaN, and
      no "distribution" key, for a model without a distribution).
    """
    from tfdldl.heads import flip_average

    images = np.asarray(images, np.float32)
    plain = predictor.predict_images(images)
    mirrored = predictor.predict_images(images[:, :, ::-1, :])
    return numpy_outputs(flip_average(plain, mirrored, predictor.label_space.grid))


def load_predictor(path: str | os.PathLike) -> Predictor:
    """Load ``path`` as a predictor.

    Accepts a SavedModel version folder (``saved_models/<name>/<version>``), a model folder
    holding numbered versions (the highest is used), or a ``.keras`` file.

    Raises:
      ModelLoadError: the path is missing, is neither kind, or lacks the signatures and
        label space tfdldl exports.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"model {path} does not exist; pass a SavedModel folder "
                             "(saved_models/<name>/<version>) or a .keras file")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ModelLoadError(f"model {path} is a file but not a .keras file; pass a "
                                 "SavedModel folder or a .keras file")
        return KerasPredictor(path)
    return SavedModelPredictor(_version_folder(path))


def _version_folder(path: str) -> str:
    """``path`` itself when it holds saved_model.pb, else its highest numbered subfolder that does."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [name for name in os.listdir(path)
                if re.fullmatch(r"\d+", name)
                and os.path.exists(os.path.join(path, name, "saved_model.pb"))]
    if versions:
        return os.path.join(path, max(versions, key=int))
    raise ModelLoadError(
        f"{path} is not a SavedModel: it has no saved_model.pb (nor numbered version folders "
        "holding one); pass the folder written by tfdldl.export, e.g. saved_models/<name>/1")


def aligner_for(predictor: Predictor, **options):
    """A FaceAligner that frames photos as ``predictor``'s training faces were framed.

    Args:
      predictor: a loaded model (its face_size and framing are used).
      **options: further FaceAligner arguments (min_face_size, max_side, ...).
    Returns:
      tfdldl.face_align.FaceAligner. A model that records no framing is aligned with
      :data:`tfdldl.face_align.DEFAULT_FRAMING`, with a warning on stderr.
    """
    import sys

    from tfdldl.face_align import DEFAULT_FRAMING, FaceAligner

    framing = predictor.framing
    if framing is None:
        framing = DEFAULT_FRAMING
        print(f"warning: {predictor.source} records no alignment framing; aligning photos "
              f"with the default ({framing.describe()}). Models exported by tfdldl.train "
              "(SavedModel, or .keras with its .training_faces.json) record it.",
              file=sys.stderr)
    return FaceAligner(output_size=predictor.face_size, framing=framing, **options)


def training_faces_path(keras_path: str | os.PathLike) -> str:
    """Where the training-faces record of a ``.keras`` file lies (beside it)."""
    return os.path.splitext(os.fspath(keras_path))[0] + TRAINING_FACES_SUFFIX


def read_training_faces(keras_path: str | os.PathLike) -> dict:
    """The ``{"image_size", "framing", ...}`` record written beside a ``.keras`` file by
    tfdldl.train ({} when there is none or it is unreadable)."""
    import json

    try:
        with open(training_faces_path(keras_path), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _stored_temperature(path: str) -> float:
    """A SavedModel's calibration temperature, or a ModelLoadError saying how to fix it."""
    from tfdldl import calibration

    try:
        return calibration.read_temperature(path)
    except ValueError as error:
        raise ModelLoadError(str(error)) from None


def resize_square(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of float [N, H, W, 3] to float32 [N, size, size, 3] (no-op when equal)."""
    images = np.asarray(images, np.float32)
    if images.shape[1:3] == (size, size):
        return images
    import keras

    return keras.ops.convert_to_numpy(
        keras.ops.image.resize(images, (size, size), interpolation="bilinear"))


def _to_numpy(outputs) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in outputs.items()}


def numpy_outputs(outputs) -> dict[str, np.ndarray]:
    """Keras tensors -> float32 NumPy arrays, by key."""
    import keras

    return {key: keras.ops.convert_to_numpy(value).astype(np.float32)
            for key, value in outputs.items()}


class SavedModelPredictor:
    """A SavedModel exported by :func:`tfdldl.export.export_saved_model`."""

    def __init__(self, path: str):
        from tfdldl import export

        try:
            self._serving = export.load_serving(path)
        except export.ServingLoadError as error:
            raise ModelLoadError(str(error)) from None
        except Exception as error:  # a foreign or broken SavedModel: say what is missing
            raise ModelLoadError(
                f"{path} is not a tfdldl SavedModel ({type(error).__name__}: {error}); it needs "
                "the 'serving_default' and 'predict_images' signatures and the "
                "assets/label_space.json that tfdldl.export writes") from None
        self.source = path
        self.temperature = _stored_temperature(path)
        self.label_space = self._serving.label_space
        self.class_names = self._serving.class_names
        self.class_attributes = self._serving.class_attributes
        self.input_size = int(self._serving.input_size)
        training_faces = self._serving.config.get(TRAINING_FACES_KEY, {})
        self.face_size = int(training_faces.get("image_size", self.input_size))
        # Exports from before the framing was recorded were all trained on the legacy one.
        self.framing = Framing.from_dict(training_faces.get("framing"))

    @property
    def serving(self):
        """The loaded SavedModel (tfdldl.serving_model.ServingModel): signatures, assets."""
        return self._serving

    def predict_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """See :class:`Predictor`; runs the ``predict_images`` signature."""
        return _to_numpy(self._serving.predict_images(np.asarray(images, np.float32)))

    def predict_encoded(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """See :class:`Predictor`; runs the ``serving_default`` signature.

        Raises:
          tfdldl.image_io.ImageReadError: the graph refused an image ("image <i>: reason").
        """
        from tfdldl.export import ERROR_OUTPUT
        from tfdldl.image_io import ImageReadError

        outputs = _to_numpy(self._serving(list(encoded)))
        for index, reason in enumerate(outputs.pop(ERROR_OUTPUT)):
            if reason:
                raise ImageReadError(f"image {index}", reason.decode("utf-8"))
        return outputs


class KerasPredictor:
    """A ``.keras`` file saved from :func:`tfdldl.models.build_model`."""

    def __init__(self, path: str):
        import keras

        from tfdldl import heads, models

        try:
            self.model = keras.saving.load_model(path, compile=False)
            self.label_space = models.label_space_of(self.model)
            self.head = heads.of_model(self.model)
        except Exception as error:
            raise ModelLoadError(f"{path} is not a tfdldl .keras model "
                                 f"({type(error).__name__}: {error})") from None
        self.source = path
        self.temperature = 1.0  # calibration is stored with SavedModels only
        self.class_names = heads.class_names(self.model)
        self.class_attributes = heads.class_attributes(self.model)
        self.input_size = int(self.model.input_shape[1])
        training_faces = read_training_faces(path)
        self.face_size = int(training_faces.get("image_size", self.input_size))
        self.framing = (Framing.from_dict(training_faces["framing"])
                        if "framing" in training_faces else None)

    def predict_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """See :class:`Predictor`; resizes to the model's input size when needed (bilinear).

        The outputs are the model head's summary (tfdldl.heads), as the SavedModel's.
        """
        images = resize_square(images, self.input_size)
        return numpy_outputs(self.head.summarise(self.model(images, training=False),
                                          self.label_space.grid))

    def predict_encoded(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """See :class:`Predictor`; decodes with :func:`tfdldl.image_io.decode_rgb`."""
        from tfdldl.image_io import decode_rgb

        images = np.stack([decode_rgb(data, f"image {i}") for i, data in enumerate(encoded)])
        return self.predict_images(images.astype(np.float32))

"""Load a SavedModel written by :func:`tfdldl.export.export_saved_model` and run its signatures.

TensorFlow is imported here on purpose (``tf.saved_model.load``), inside the functions.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

import numpy as np

from tfdldl.label_space import LabelSpace
from tfdldl.output_names import categorical_head_of
from tfdldl.signatures import (INPUT_NAME, MAX_BATCH, PREDICT_IMAGES, REQUIRED_SIGNATURES,
                               SERVING_DEFAULT, SERVING_FLIP_AVERAGED)

LABEL_SPACE_ASSET = "label_space.json"
CONFIG_ASSET = "config.json"
EXPORT_INFO_ASSET = "export_info.json"


class ServingLoadError(ValueError):
    """A folder that is not a SavedModel written by :func:`tfdldl.export.export_saved_model`."""


class ServingModel:
    """A SavedModel from :func:`export_saved_model`, loaded with ``tf.saved_model.load``.

    Attributes:
      path: the version folder.
      label_space: the model's label grid (assets/label_space.json).
      input_size: S, the side of the face the network takes, pixels.
      head: "distribution", "ranking" or "regression" (the head giving ``value``).
      class_names: {probability output: its class names in column order}, e.g.
        {"gender_probability": ["male", "female"]}; {} when the model has no categorical
        head (tfdldl.heads_categorical).
      class_attributes: {probability output: the record feature its head predicts}, e.g.
        {"race_probability": "group"} (exports from before it was stored: the head's name).
      config: the training run's config (assets/config.json; {} when none was stored).
      signatures: the loaded signatures, by name.
    """

    def __init__(self, path: str | os.PathLike):
        import tensorflow as tf

        self.path = os.fspath(path)
        _check_saved_model_folder(self.path)
        self._loaded = tf.saved_model.load(self.path)
        self.signatures = dict(self._loaded.signatures)
        missing = [name for name in REQUIRED_SIGNATURES if name not in self.signatures]
        if missing:
            raise ServingLoadError(
                f"{self.path} lacks the signature(s) {missing}; it has "
                f"{sorted(self.signatures)}. Re-export it with tfdldl.export.export_saved_model")
        self.label_space = LabelSpace.from_dict(_read_asset(self.path, LABEL_SPACE_ASSET))
        info = _read_asset(self.path, EXPORT_INFO_ASSET)
        self.input_size = int(info["input_size"])
        self.head = info["head"]
        self.class_names = {key: list(names)
                            for key, names in info.get("class_names", {}).items()}
        stored = info.get("class_attributes", {})
        self.class_attributes = {key: stored.get(key) or categorical_head_of(key)
                                 for key in self.class_names}
        self.config = _read_asset(self.path, CONFIG_ASSET)

    def __call__(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Encoded images of N aligned faces -> numpy {"value" [N], "stddev" [N],
        "distribution" [N, K], "error" [N] bytes (b"" where decoded; NaN values where
        not)} (plus "<name>_probability" [N, C] per categorical head), through
        ``serving_default``."""
        return self._run(SERVING_DEFAULT, _string_batch(encoded))

    def predict_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [N, H, W, 3] RGB 0..255 -> the same dict, through ``predict_images``."""
        import tensorflow as tf

        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"predict_images takes [N, H, W, 3] RGB images, got shape "
                             f"{images.shape}")
        return self._run(PREDICT_IMAGES, tf.constant(images))

    def predict_flip_averaged(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Like ``__call__``, averaging each face with its mirror (``serving_flip_averaged``)."""
        return self._run(SERVING_FLIP_AVERAGED, _string_batch(encoded))

    def _run(self, signature: str, images) -> dict[str, np.ndarray]:
        if signature not in self.signatures:
            raise ServingLoadError(f"{self.path} has no '{signature}' signature (it has "
                                   f"{sorted(self.signatures)})")
        import tensorflow as tf

        try:
            outputs = self.signatures[signature](**{INPUT_NAME: images})
        except tf.errors.InvalidArgumentError as error:
            if images.dtype != tf.string or len(images) > MAX_BATCH:
                raise
            raise self._first_undecodable(signature, images, error) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def _first_undecodable(self, signature: str, images, error) -> Exception:
        """The ImageReadError naming the image of a batch whose data TF's decoders reject
        (the graph checks headers, not every byte), found by trying them one at a time."""
        import tensorflow as tf

        from tfdldl.image_io import ImageReadError

        for index in range(len(images)):
            try:
                self.signatures[signature](**{INPUT_NAME: images[index:index + 1]})
            except tf.errors.InvalidArgumentError as alone:
                return ImageReadError(f"image {index}", "corrupt image data: TensorFlow's "
                                      f"decoder says '{_op_message(alone.message)}'")
        return error


def _op_message(text: str) -> str:
    """The op's own words in a TensorFlow error message (no graph or node decoration)."""
    lines = [re.sub(r"\{\{[^}]*\}\}", "", line).strip() for line in text.splitlines()
             if line.strip() and not line[0].isspace()]
    words = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "<stack traces", "[["))]
    return re.sub(r"\s*\[Op:[^]]*\]$", "", words[0]) if words else text.strip()


def load_serving(path: str | os.PathLike) -> ServingModel:
    """Load the SavedModel version folder ``path`` (``saved_models/<name>/<version>``).

    Raises:
      ServingLoadError: not a SavedModel, not one tfdldl exported (signatures or assets
        missing); the message names what is missing and what to pass instead.
    """
    return ServingModel(path)


def _check_saved_model_folder(path: str) -> None:
    if not os.path.isdir(path):
        raise ServingLoadError(f"{path} is not a folder; pass a SavedModel version folder "
                               "such as saved_models/<name>/1")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        numbers = versions(path)
        hint = (f"; it holds version folders {numbers}, pass one of them, e.g. "
                f"{os.path.join(path, str(numbers[-1]))}" if numbers else
                "; pass a folder written by tfdldl.export.export_saved_model")
        raise ServingLoadError(f"{path} is not a SavedModel (no saved_model.pb){hint}")


def _read_asset(path: str, filename: str) -> Any:
    asset = os.path.join(path, "assets", filename)
    if not os.path.isfile(asset):
        raise ServingLoadError(f"{path} has no assets/{filename}: it was not exported by "
                               "tfdldl.export.export_saved_model (or the assets folder was "
                               "dropped when copying); re-export it")
    with open(asset, encoding="utf-8") as stream:
        try:
            return json.load(stream)
        except json.JSONDecodeError as error:
            raise ServingLoadError(f"{asset} is not valid JSON ({error}); re-export the model")


def encoded_list(encoded: Sequence[bytes]) -> list[bytes]:
    """``encoded`` as a list of N byte strings, one encoded image each (clear error otherwise)."""
    if isinstance(encoded, (bytes, str)):
        raise TypeError("pass a list of encoded images (one bytes object per face), not a "
                        "single bytes object")
    encoded = list(encoded)
    if not all(isinstance(item, bytes) for item in encoded):
        raise TypeError("every image must be the encoded file's bytes (JPEG/PNG), e.g. "
                        "open(path, 'rb').read()")
    return encoded


def _string_batch(encoded: Sequence[bytes]):
    """A tf.string [N] tensor from N encoded images."""
    import tensorflow as tf

    encoded = encoded_list(encoded)
    return tf.constant(encoded, dtype=tf.string, shape=[len(encoded)])


def versions(model_dir: str) -> list[int]:
    """The numbered version folders in ``model_dir`` that hold a saved_model.pb."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(entry) for entry in os.listdir(model_dir)
                  if entry.isdigit()
                  and os.path.isfile(os.path.join(model_dir, entry, "saved_model.pb")))

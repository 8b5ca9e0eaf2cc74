"""Export trained models for TensorFlow Serving, and load them back.

Layout written by :func:`export_saved_model` (TensorFlow Serving loads it as it is)::

    saved_models/
      models.config                 <- write_models_config(): one entry per model folder
      <name>/<version>/             <- a SavedModel
        saved_model.pb, variables/
        assets/label_space.json     <- LabelSpace.to_dict(): what "distribution" columns mean
        assets/config.json          <- the run's resolved config ({} when none was given)
        assets/export_info.json     <- input size, head, signatures (read by load_serving)

Signatures (N = batch size, at most :data:`MAX_BATCH`; K = label grid size):

- ``serving_default``: ``images`` tf.string [N], encoded JPEG/PNG/BMP/GIF/WebP bytes of
  aligned faces (TF Serving's REST ``{"b64": ...}``). Each image is decoded in the graph by
  :func:`tfdldl.tf_image_io.decode_rgb`, with the same rules as every other path
  (:mod:`tfdldl.image_io`: EXIF orientation, accurate IDCT, alpha on black, first frame,
  TIFF refused, at most :data:`tfdldl.image_io.MAX_PIXELS` pixels read from the header
  before decoding), resized to the model's input size (bilinear, no antialiasing; skipped
  when the size already matches) as float32 0..255; the model normalises itself.
- ``predict_images``: ``images`` float32 [N, H, W, 3] RGB 0..255 (H x W at most
  MAX_PIXELS), resized the same way.
- ``serving_flip_averaged``: like ``serving_default``, but averages each face with its
  mirror image (the paper's test protocol; one forward pass over 2N images). It is a
  separate signature so that ``serving_default`` stays a single plain pass.

Outputs (float32): ``value`` [N] (the model's "value" output: the expected label, label
units), ``stddev`` [N] (the standard deviation of the predicted distribution, sqrt(Σ_k p_k
(l_k - ŷ)²) with ŷ = Σ_k p_k l_k, label units; ``tfdldl.layers.distribution_stddev``) and
``distribution`` [N, K]. A ranking-head model reports the distribution its K-1 binary
outputs imply (differences of the ranking CDF, negatives clipped, renormalised); a
regression-head model has no distribution, so it exports only ``value`` and a NaN ``stddev``.
The two signatures of encoded images also output ``error`` tf.string [N]: "" for an image
that was decoded, else why it was not (not an image, TIFF, too many pixels, truncated...);
such an image's ``value``, ``stddev`` and ``distribution`` are NaN and the others of the
batch are answered. A batch of more than MAX_BATCH images, or ``predict_images`` pixels
above MAX_PIXELS, fails the call with a message that says so. (Data damaged inside a file
whose headers are intact is left to TensorFlow's decoders, whose error fails the call.)

Also here: :func:`save_keras` (the ``.keras`` file for fine-tuning) and :func:`load_serving`.
TensorFlow is imported here on purpose: export is TensorFlow-only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

from tfdldl import layers, safe_io
from tfdldl.jsonio import write_json
from tfdldl.label_space import LabelSpace

SERVING_DEFAULT = "serving_default"
PREDICT_IMAGES = "predict_images"
SERVING_FLIP_AVERAGED = "serving_flip_averaged"
SIGNATURES = (SERVING_DEFAULT, PREDICT_IMAGES, SERVING_FLIP_AVERAGED)
REQUIRED_SIGNATURES = (SERVING_DEFAULT, PREDICT_IMAGES)
INPUT_NAME = "images"

LABEL_SPACE_ASSET = "label_space.json"
CONFIG_ASSET = "config.json"
EXPORT_INFO_ASSET = "export_info.json"
MODELS_CONFIG = "models.config"
EXPORT_FORMAT = 1
ERROR_OUTPUT = "error"
# Images per call of any signature: 10,000 faces in one request would need tens of GB of
# activations and abort TF Serving (std::bad_alloc); split larger batches.
MAX_BATCH = 256

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SCRATCH = re.compile(r"\.\d+\.partial-.+")


class ServingLoadError(ValueError):
    """A folder that is not a SavedModel written by :func:`export_saved_model`."""


def input_size_of(model) -> int:
    """S, the side of the square RGB image ``model`` takes ([N, S, S, 3]).

    Raises:
      ValueError: the model's input is not a fixed square RGB image.
    """
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(f"export needs a model taking [N, S, S, 3] images; this one takes "
                         f"{shape}. Build it with tfdldl.models.build_model(input_size=S)")
    return int(shape[1])


def export_saved_model(model, out_root: str | os.PathLike, name: str, version: int,
                       config_dict: Mapping[str, Any] | None = None) -> str:
    """Write ``model`` as the SavedModel ``<out_root>/<name>/<version>/`` for TF Serving.

    The SavedModel is written into a hidden temporary folder beside the version folder and
    renamed when complete, so TF Serving (which watches ``<out_root>/<name>/`` for numbered
    folders) never sees a half-written version. Folders get mode 0755 and files 0644, so a
    server running as another user can read them. One export at a time writes into
    ``<out_root>/<name>/`` (a lock), and it first deletes the temporary folders that killed
    exports left there.

    Args:
      model: a Keras model from ``tfdldl.models.build_model`` (input float32 [N, S, S, 3]
        RGB 0..255; dict outputs with "value" [N] and "distribution" [N, K] or "ranking"
        [N, K-1], or "value" alone).
      out_root: the saved_models folder.
      name: the model's name in TF Serving: letters, digits, '_', '.', '-'.
      version: a non-negative integer; TF Serving serves the highest one.
      config_dict: the run's resolved config, stored as assets/config.json.
    Returns:
      The version folder's path.
    Raises:
      ValueError: a bad name or version, or a model that does not follow the contract.
      FileExistsError: that version already exists (pick the next version number).
      tfdldl.safe_io.FolderBusyError: another process is exporting into ``<name>/``.
    """
    import keras

    from tfdldl import models

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"SavedModel export needs the TensorFlow backend, this process runs "
                           f"Keras on '{keras.backend.backend()}'; save the model with "
                           "save_keras() and export it from a process with "
                           "KERAS_BACKEND=tensorflow")
    name, version = _checked_name(name), _checked_version(version)
    model_dir = os.path.join(os.fspath(out_root), name)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; export with a higher version number "
                              "(TF Serving serves the highest) or delete that folder first")
    size = input_size_of(model)
    head = _head_of(model)
    label_space = models.label_space_of(model)

    # No archive.track(model): the endpoints capture every variable they use (BatchNorm
    # statistics included), and tracking the model as well stores each weight twice.
    archive = keras.export.ExportArchive()
    for signature, (fn, spec) in _endpoints(model, label_space, size).items():
        archive.add_endpoint(signature, fn, input_signature=[spec])

    os.makedirs(model_dir, exist_ok=True)
    with safe_io.FolderLock(model_dir, "SavedModel export"):
        _remove_scratch(model_dir)
        if os.path.exists(final):
            raise FileExistsError(f"{final} already exists; export with a higher version "
                                  "number or delete that folder first")
        _write_version(archive, final, size, head, label_space, config_dict)
    return final


def remove_scratch(out_root: str | os.PathLike, name: str) -> None:
    """Delete the hidden temporary folders that killed exports left in ``<out_root>/<name>/``.

    Raises:
      tfdldl.safe_io.FolderBusyError: an export into that folder is running.
    """
    model_dir = os.path.join(os.fspath(out_root), _checked_name(name))
    if os.path.isdir(model_dir):
        with safe_io.FolderLock(model_dir, "SavedModel export"):
            _remove_scratch(model_dir)


def _remove_scratch(model_dir: str) -> None:
    for entry in os.listdir(model_dir):
        if _SCRATCH.fullmatch(entry):  # left by a killed export: no one else writes here
            shutil.rmtree(os.path.join(model_dir, entry), ignore_errors=True)


def _write_version(archive, final: str, size: int, head: str, label_space: LabelSpace,
                   config_dict: Mapping[str, Any] | None) -> None:
    """Write the archive and its assets into a scratch folder, make it readable, rename it."""
    import keras
    import tensorflow as tf

    model_dir, version = os.path.split(final)
    scratch = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=model_dir)
    try:
        archive.write_out(scratch, verbose=False)
        info = {"format": EXPORT_FORMAT, "input_size": size, "head": head,
                "outputs": _output_names(head), "signatures": list(SIGNATURES),
                "input_name": INPUT_NAME, "keras_version": keras.__version__,
                "tensorflow_version": tf.__version__}
        assets = os.path.join(scratch, "assets")
        os.makedirs(assets, exist_ok=True)
        for filename, content in ((LABEL_SPACE_ASSET, label_space.to_dict()),
                                  (CONFIG_ASSET, dict(config_dict or {})),
                                  (EXPORT_INFO_ASSET, info)):
            with open(os.path.join(assets, filename), "w", encoding="utf-8") as stream:
                json.dump(content, stream, indent=2, sort_keys=True, default=str)
        safe_io.make_readable(scratch)
        os.rename(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} is not usable as a TF Serving model folder; use "
                         "letters, digits, '_', '.' and '-' only, e.g. 'utkface_tiny'")
    return name


def _checked_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"model version must be a non-negative integer (TF Serving's version "
                         f"folders are numbers), got {version!r}")
    return int(version)


def _head_of(model) -> str:
    """"distribution", "ranking" or "regression", from the model's output names."""
    names = set(model.output_names)
    if "value" not in names:
        raise ValueError(f"export needs a model with a 'value' output; this one has "
                         f"{sorted(names)}. Build it with tfdldl.models.build_model")
    for head in ("distribution", "ranking"):
        if head in names:
            return head
    return "regression"


def _output_names(head: str) -> list[str]:
    return ["value", "stddev"] if head == "regression" else ["value", "stddev", "distribution"]


def _endpoints(model, label_space: LabelSpace, size: int) -> dict:
    """{signature name: (python function of ``images``, its tf.TensorSpec)}."""
    import tensorflow as tf

    grid = tf.constant(label_space.grid, tf.float32)

    def summarise(images):
        return _summaries(model(images, training=False), grid)

    def serving_default(images):
        faces, errors = _decode_batch(images, size)
        return _refused_as_nan(summarise(faces), errors)

    def predict_images(images):
        return summarise(_resize_batch(images, size))

    def serving_flip_averaged(images):
        faces, errors = _decode_batch(images, size)
        outputs = model(tf.concat([faces, tf.reverse(faces, axis=[2])], axis=0), training=False)
        halves = {key: tf.reduce_mean(tf.stack(tf.split(value, 2, axis=0)), axis=0)
                  for key, value in outputs.items()}
        return _refused_as_nan(_summaries(halves, grid), errors)

    encoded = tf.TensorSpec([None], tf.string, name=INPUT_NAME)
    pixels = tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_NAME)
    return {SERVING_DEFAULT: (serving_default, encoded),
            PREDICT_IMAGES: (predict_images, pixels),
            SERVING_FLIP_AVERAGED: (serving_flip_averaged, encoded)}


def _check_batch(images):
    """Fail the call, saying why, when ``images`` holds more than MAX_BATCH images."""
    import tensorflow as tf

    return tf.debugging.assert_less_equal(
        tf.shape(images)[0], MAX_BATCH,
        message=f"too many images in one request: at most {MAX_BATCH} per call "
                "(tfdldl.export.MAX_BATCH); split the batch")


def _decode_batch(encoded, size: int):
    """tf.string [N] encoded images -> (float32 [N, size, size, 3] RGB 0..255 (zeros where
    refused), tf.string [N] errors ("" where decoded)), by tfdldl.tf_image_io."""
    import tensorflow as tf

    from tfdldl import tf_image_io

    with tf.control_dependencies([_check_batch(encoded)]):
        encoded = tf.identity(encoded)
    return tf.map_fn(lambda data: tf_image_io.decode_resized(data, size), encoded,
                     fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32),
                                          tf.TensorSpec([], tf.string)))


def _refused_as_nan(summary: dict, errors) -> dict:
    """``summary`` with NaN rows where ``errors`` is not "", and the ``error`` output."""
    import tensorflow as tf

    refused = tf.not_equal(errors, "")
    nan = float("nan")
    answered = {key: tf.where(tf.reshape(refused, [-1] + [1] * (len(value.shape) - 1)),
                              nan, value) for key, value in summary.items()}
    answered[ERROR_OUTPUT] = errors
    return answered


def _resize_batch(images, size: int):
    """float32 [N, H, W, 3] -> [N, size, size, 3]: bilinear, untouched when already that size.

    Fails the call when N > MAX_BATCH or H x W > tfdldl.image_io.MAX_PIXELS.
    """
    import tensorflow as tf

    from tfdldl.image_io import MAX_PIXELS

    shape = tf.shape(images)
    area = tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64)
    checks = [_check_batch(images), tf.debugging.assert_less_equal(
        area, tf.constant(MAX_PIXELS, tf.int64),
        message=f"images larger than {MAX_PIXELS} pixels (tfdldl.image_io.MAX_PIXELS); "
                "downscale them")]
    with tf.control_dependencies(checks):
        same = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
        resized = tf.cond(same, lambda: tf.identity(images),
                          lambda: tf.image.resize(images, [size, size], method="bilinear"))
    return tf.ensure_shape(resized, [None, size, size, 3])


def _summaries(outputs: Mapping[str, Any], grid) -> dict:
    """Model outputs -> {"value" [N], "stddev" [N], "distribution" [N, K]} (see module doc)."""
    import tensorflow as tf

    value = tf.reshape(outputs["value"], [-1])
    if "distribution" in outputs:
        distribution = outputs["distribution"]
    elif "ranking" in outputs:
        distribution = _distribution_from_ranking(outputs["ranking"])
    else:
        return {"value": value, "stddev": tf.fill(tf.shape(value), float("nan"))}
    return {"value": value, "stddev": layers.distribution_stddev(distribution, grid),
            "distribution": distribution}


def _distribution_from_ranking(ranking):
    """float32 [N, K-1] P(y > l_k) -> [N, K] P(y = l_k), from the implied CDF.

    Negative masses (non-monotone sigmoid outputs) are clipped to 0 and rows renormalised.
    """
    import tensorflow as tf

    ones = tf.ones_like(ranking[:, :1])
    above = tf.concat([ones, ranking, tf.zeros_like(ones)], axis=-1)  # P(y > l_{k-1}), k=0..K
    mass = tf.maximum(above[:, :-1] - above[:, 1:], 0.0)
    return mass / tf.maximum(tf.reduce_sum(mass, axis=-1, keepdims=True), 1e-12)


def write_models_config(saved_models_root: str | os.PathLike,
                        base_path_prefix: str = "/models") -> str:
    """Write ``<saved_models_root>/models.config`` listing every exported model for TF Serving.

    A model folder is any subfolder holding at least one numbered version folder with a
    saved_model.pb. ``base_path`` is ``<base_path_prefix>/<name>``: the default matches
    ``docker run -v $PWD/saved_models:/models tensorflow/serving
    --model_config_file=/models/models.config``.

    Args:
      saved_models_root: the folder export_saved_model wrote into.
      base_path_prefix: where the server sees that folder.
    Returns:
      The path of models.config (protobuf text format, a ModelServerConfig).
    Raises:
      FileNotFoundError: no exported model under ``saved_models_root``.
    """
    root = os.fspath(saved_models_root)
    names = sorted(name for name in (os.listdir(root) if os.path.isdir(root) else [])
                   if _MODEL_NAME.fullmatch(name) and _versions(os.path.join(root, name)))
    if not names:
        raise FileNotFoundError(f"no exported model under {root} (expected <name>/<version>/"
                                "saved_model.pb); run the export first")
    entries = "".join(
        "  config {\n"
        f"    name: {json.dumps(name)}\n"
        f"    base_path: {json.dumps(base_path_prefix.rstrip('/') + '/' + name)}\n"
        '    model_platform: "tensorflow"\n'
        "  }\n" for name in names)
    path = os.path.join(root, MODELS_CONFIG)
    with safe_io.atomic_file(path, mode=safe_io.FILE_MODE) as stream:
        stream.write("model_config_list {\n" + entries + "}\n")
    return path


def _versions(model_dir: str) -> list[int]:
    """The numbered version folders in ``model_dir`` that hold a saved_model.pb."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(entry) for entry in os.listdir(model_dir)
                  if entry.isdigit()
                  and os.path.isfile(os.path.join(model_dir, entry, "saved_model.pb")))


def save_keras(model, path: str | os.PathLike, training_faces: dict | None = None) -> str:
    """Save ``model`` as a ``.keras`` file for fine-tuning, atomically, and check it loads.

    The file is written under a temporary name, loaded back (custom tfdldl layers
    included) and compared weight by weight before it is renamed to ``path`` (mode 0644;
    never through a symbolic link).
    ``training_faces`` (Manifest.face_alignment(): face size and framing) is written
    beside it (tfdldl.inference.training_faces_path), so that predict aligns photos for
    the .keras model as it does for the SavedModel.

    Returns:
      ``path``.
    Raises:
      ValueError: ``path`` does not end in ``.keras``, or the reloaded model differs.
    """
    import keras

    from tfdldl import models  # noqa: F401  (registers the custom layers for loading)

    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: a Keras model file must end in .keras")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with safe_io.atomic_path(path, mode=safe_io.FILE_MODE, suffix=".keras") as partial:
        model.save(partial)
        reloaded = keras.saving.load_model(partial, compile=False)
        saved, loaded = model.get_weights(), reloaded.get_weights()
        if len(saved) != len(loaded) or any(not np.array_equal(a, b)
                                            for a, b in zip(saved, loaded)):
            raise ValueError(f"{path}: the reloaded .keras model's weights differ from the "
                             "model's; the model has a layer that does not serialise")
    if training_faces is not None:
        from tfdldl.inference import training_faces_path

        write_json(training_faces_path(path), training_faces)
    return path


class ServingModel:
    """A SavedModel from :func:`export_saved_model`, loaded with ``tf.saved_model.load``.

    Attributes:
      path: the version folder.
      label_space: the model's label grid (assets/label_space.json).
      input_size: S, the side of the face the network takes, pixels.
      head: "distribution", "ranking" or "regression".
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
        self.config = _read_asset(self.path, CONFIG_ASSET)

    def __call__(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Encoded images of N aligned faces -> numpy {"value" [N], "stddev" [N],
        "distribution" [N, K], "error" [N] bytes (b"" where decoded; NaN values where
        not)}, through ``serving_default``."""
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


def reexport_saved_model(path: str | os.PathLike, out_root: str | os.PathLike, name: str,
                         version: int) -> str:
    """Export the tfdldl SavedModel ``path`` again, with this version's signatures.

    For models exported before a fix to the serving graph (e.g. its image decoder): the
    weights, label space, config and other assets (e.g. a calibration) are kept, the
    signatures are written anew.

    Args:
      path: a SavedModel version folder written by :func:`export_saved_model`; its config
        asset must name the network (``model.arch``, ``model.pooling``, ``model.width``).
      out_root, name, version: as :func:`export_saved_model`.
    Returns:
      The new version folder's path.
    Raises:
      ServingLoadError: ``path`` is not a tfdldl SavedModel, or its weights do not fit the
        network its config names.
    """
    from tfdldl import models

    old = load_serving(path)
    network = old.config.get("model", {})
    if "arch" not in network:
        raise ServingLoadError(f"{old.path}: assets/{CONFIG_ASSET} names no model.arch; "
                               "re-export from the training run instead")
    model = models.build_model(network["arch"], old.label_space, input_size=old.input_size,
                               pooling=network.get("pooling", "hybrid"), head=old.head,
                               width=network.get("width"))
    stored = {variable.name.split(":")[0]: variable
              for variable in old.signatures[PREDICT_IMAGES].variables}
    wanted = {weight.path: weight for weight in model.weights}
    if set(stored) != set(wanted) or any(
            tuple(stored[key].shape) != tuple(weight.shape) for key, weight in wanted.items()):
        raise ServingLoadError(f"{old.path}: its weights do not fit the {network['arch']} "
                               "network its config names; re-export from the training run")
    for key, weight in wanted.items():
        weight.assign(stored[key].numpy())
    final = export_saved_model(model, out_root, name, version, config_dict=old.config)
    assets = os.path.join(old.path, "assets")
    for filename in sorted(os.listdir(assets)):  # e.g. a calibration written since
        if not os.path.exists(os.path.join(final, "assets", filename)):
            shutil.copy2(os.path.join(assets, filename), os.path.join(final, "assets"))
    return final


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
        versions = _versions(path)
        hint = (f"; it holds version folders {versions}, pass one of them, e.g. "
                f"{os.path.join(path, str(versions[-1]))}" if versions else
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

"""Export trained models for TensorFlow Serving, and load them back.

Layout written by :func:`export_saved_model` (TensorFlow Serving loads it as it is)::

    saved_models/
      models.config                 <- write_models_config(): one entry per model folder
      <name>/<version>/             <- a SavedModel
        saved_model.pb, variables/
        assets/label_space.json     <- LabelSpace.to_dict(): what "distribution" columns mean
        assets/config.json          <- the run's resolved config ({} when none was given)
        assets/export_info.json     <- input size, head, signatures, class names of the
                                       probability outputs (read by load_serving)

Signatures, their inputs and outputs: :mod:`tfdldl.signatures`; loading a SavedModel back:
:mod:`tfdldl.serving_model` (both re-exported here under their former names).

Also here: :func:`save_keras` (the ``.keras`` file for fine-tuning) and
:func:`reexport_saved_model`.
TensorFlow is imported here on purpose: export is TensorFlow-only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any, Mapping

import numpy as np

from tfdldl import safe_io
from tfdldl.jsonio import write_json
from tfdldl.label_space import LabelSpace
from tfdldl.serving_model import (CONFIG_ASSET, EXPORT_INFO_ASSET, LABEL_SPACE_ASSET,
                                  ServingLoadError, ServingModel, encoded_list, load_serving,
                                  versions)
from tfdldl.signatures import (ERROR_OUTPUT, INPUT_NAME, MAX_BATCH, PREDICT_IMAGES,
                               SERVING_DEFAULT, SERVING_FLIP_AVERAGED, SIGNATURES, endpoints)

# Also the names callers know from this module (tfdldl.serving, the tests): the loader's
# and the signatures' (re-exported).
__all__ = ["export_saved_model", "remove_scratch", "write_models_config", "save_keras",
           "reexport_saved_model", "keras_model_of", "input_size_of", "load_serving", "ServingModel",
           "ServingLoadError", "encoded_list", "ERROR_OUTPUT", "INPUT_NAME", "MAX_BATCH",
           "SERVING_DEFAULT", "PREDICT_IMAGES", "SERVING_FLIP_AVERAGED", "SIGNATURES",
           "LABEL_SPACE_ASSET", "CONFIG_ASSET", "EXPORT_INFO_ASSET", "MODELS_CONFIG"]

MODELS_CONFIG = "models.config"
EXPORT_FORMAT = 1

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SCRATCH = re.compile(r"\.\d+\.partial-.+")

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
    from tfdldl import heads, models

    _require_tensorflow_backend()
    model_dir, final = _new_version_folder(out_root, name, version)
    size = input_size_of(model)
    head = heads.of_model(model)
    label_space = models.label_space_of(model)
    archive = _export_archive(model, head, label_space, size)

    os.makedirs(model_dir, exist_ok=True)
    with safe_io.FolderLock(model_dir, "SavedModel export"):
        _remove_scratch(model_dir)
        if os.path.exists(final):
            raise FileExistsError(f"{final} already exists; export with a higher version "
                                  "number or delete that folder first")
        _write_version(archive, final, size, head, label_space, config_dict,
                       heads.class_names(model), heads.class_attributes(model))
    return final


def _require_tensorflow_backend() -> None:
    """Raise RuntimeError unless Keras runs on TensorFlow in this process."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"SavedModel export needs the TensorFlow backend, this process runs "
                           f"Keras on '{keras.backend.backend()}'; save the model with "
                           "save_keras() and export it from a process with "
                           "KERAS_BACKEND=tensorflow")


def _new_version_folder(out_root: str | os.PathLike, name: str,
                        version: int) -> tuple[str, str]:
    """(``<out_root>/<name>``, ``<out_root>/<name>/<version>``) after checking the name and
    version; raises ValueError for a bad one, FileExistsError when that version exists."""
    name, version = _checked_name(name), _checked_version(version)
    model_dir = os.path.join(os.fspath(out_root), name)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; export with a higher version number "
                              "(TF Serving serves the highest) or delete that folder first")
    return model_dir, final


def _export_archive(model, head, label_space: LabelSpace, size: int):
    """A ``keras.export.ExportArchive`` holding the serving signatures of ``model``
    (:func:`tfdldl.signatures.endpoints`)."""
    import keras

    # No archive.track(model): the endpoints capture every variable they use (BatchNorm
    # statistics included), and tracking the model as well stores each weight twice.
    archive = keras.export.ExportArchive()
    for signature, (fn, spec) in endpoints(model, head, label_space, size).items():
        archive.add_endpoint(signature, fn, input_signature=[spec])
    return archive


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


def _write_version(archive, final: str, size: int, head, label_space: LabelSpace,
                   config_dict: Mapping[str, Any] | None,
                   class_names: Mapping[str, list[str]],
                   class_attributes: Mapping[str, str]) -> None:
    """Write the archive and its assets into a scratch folder, make it readable, rename it."""
    import keras
    import tensorflow as tf

    model_dir, version = os.path.split(final)
    scratch = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=model_dir)
    try:
        archive.write_out(scratch, verbose=False)
        info = {"format": EXPORT_FORMAT, "input_size": size, "head": head.kind,
                "outputs": list(head.serving_outputs), "class_names": dict(class_names),
                "class_attributes": dict(class_attributes),
                "signatures": list(SIGNATURES),
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
                   if _MODEL_NAME.fullmatch(name) and versions(os.path.join(root, name)))
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
    old = load_serving(path)
    model = keras_model_of(old)
    final = export_saved_model(model, out_root, name, version, config_dict=old.config)
    assets = os.path.join(old.path, "assets")
    for filename in sorted(os.listdir(assets)):  # e.g. a calibration written since
        if not os.path.exists(os.path.join(final, "assets", filename)):
            shutil.copy2(os.path.join(assets, filename), os.path.join(final, "assets"))
    return final


def keras_model_of(serving: ServingModel):
    """The Keras model behind a tfdldl SavedModel: the network its config names, built
    anew, holding the SavedModel's weights (for what the signatures do not give, e.g. an
    inner layer's output).

    Raises:
      ServingLoadError: the config asset names no ``model.arch``, or the stored weights do
        not fit that network.
    """
    from tfdldl import heads, models
    from tfdldl.experiment import into_label

    network = serving.config.get("model", {})
    if "arch" not in network:
        raise ServingLoadError(f"{serving.path}: assets/{CONFIG_ASSET} names no model.arch; "
                               "re-export from the training run instead")
    model = models.build_model(network["arch"], serving.label_space,
                               input_size=serving.input_size,
                               pooling=network.get("pooling", "hybrid"), head=serving.head,
                               width=network.get("width"),
                               categorical=[
                                   heads.CategoricalHead(heads.categorical_head_of(output),
                                                         names,
                                                         serving.class_attributes[output])
                                   for output, names in serving.class_names.items()],
                               into_label=into_label(network),
                               attention=bool(network.get("attention", False)))
    stored = {variable.name.split(":")[0]: variable
              for variable in serving.signatures[PREDICT_IMAGES].variables}
    wanted = {weight.path: weight for weight in model.weights}
    if set(stored) != set(wanted) or any(
            tuple(stored[key].shape) != tuple(weight.shape) for key, weight in wanted.items()):
        raise ServingLoadError(f"{serving.path}: its weights do not fit the "
                               f"{network['arch']} network its config names; re-export from "
                               "the training run")
    for key, weight in wanted.items():
        weight.assign(stored[key].numpy())
    return model

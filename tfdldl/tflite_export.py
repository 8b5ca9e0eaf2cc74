"""TensorFlow Lite export for phones: float16, full int8, int8 body + float head; and a check.

    python -m tfdldl.tflite_export --model runs/<run>/model.keras --data data/utkface \
        --out runs/tflite --modes float16,int8,int8_logits

Modes (every TFLite model takes one face: [1, S, S, 3] RGB, S = the model's input size):

* ``float16``: weights stored as float16, computation in float32; float32 0..255 input;
  outputs ``value`` [1] and ``distribution`` [1, K] (and ``<name>_probability`` [1, C] per
  categorical head, e.g. ``gender_probability``, in every mode). Converted from the SavedModel's
  ``predict_images`` signature (a ``.keras`` file is first exported to a temporary one).
* ``int8``: full-integer quantisation of the whole model, softmax and expectation
  included; uint8 pixels in (scale 1, zero point 0: exact for 0..255), float32 outputs.
  Calibrated on the representative faces. Kept for comparison: the softmax output in
  steps of 1/256 and the int8 weights move the MAE by tenths of a year (see below).
* ``int8_logits`` (:data:`PHONE_MODE`, the one to ship): the network up to the logits in
  full int8 (uint8 pixels in, every conv/dense in int8), one float32 output ``logits``
  [1, K] (dequantised; with categorical heads also each one's ``<name>_logits`` [1, C]); the softmax
  and the expectation Σ_k p_k l_k — K = 101 floats — run in float after the interpreter
  (:func:`head_from_logits`, :func:`softmax`; an app does the same).
  Before conversion two bias corrections use the representative faces (the empirical
  bias correction of Nagel et al. 2019, "Data-Free Quantization"): (1) layer by layer, the
  shift of each conv/dense output's channel means caused by rounding its kernel to int8
  (per output channel, as TFLite does) is removed through the following BatchNorm's
  moving mean (the Dense bias for the logits); (2) the model is converted once, and the
  Dense bias absorbs the mean offset of the int8 logits from the float logits plus a tilt
  α·l_k (:func:`matching_tilt`) that makes the mean predicted label over those faces the
  float model's; the model is then converted again. Needs the ``.keras`` file (the Keras
  layers) and a distribution head.

The check runs each .tflite model and the reference model (the one passed) on the same
split (no flip averaging, same images) and reports both MAEs and their difference against
a tolerance (0.05 label units by default); the command exits 1 when a mode is out of it.
For a model with categorical heads it also reports, per head, the largest per-face
difference of its probabilities.
Calibration faces come from the train split by default and the check runs on val, so the
corrections are never fitted on the faces they are judged on (and never on test).

Measured (TinyAgeNet 64 px trained 6 short epochs on UTKFace; its SavedModel's MAE is
10.074 on the 2,005 val faces of data/utkface_224; calibration: the first 500 train faces;
``--model runs/small_utkface/tiny64.keras --data data/utkface_224``), MAE change against the
SavedModel, mean / largest per-face |change|, file size:

    float16      -0.008   0.01 / 0.19 years   1.88 MB   within 0.05
    int8         -0.418   1.03 / 9.7  years   0.98 MB   out of tolerance
    int8_logits  +0.011   0.38 / 4.7  years   0.98 MB   within 0.05

int8_logits meets the tolerance because the corrections remove the systematic shift;
single faces still move by 0.38 years on average. Without the corrections the int8 body
with a float head moved the MAE by -0.10, and int8 weights alone (dynamic-range
quantisation, float activations) by -0.20, most of it from rounding conv1_2's kernel.
TFLite's 16x8 mode (16-bit activations, the same int8 weights) did not help: -0.19 with
a float head, +11.9 with the whole model in 16x8, and ~70x slower on this CPU.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Sequence

import numpy as np

from tfdldl import safe_io
from tfdldl.heads import DISTRIBUTION, VALUE
from tfdldl.inference import Predictor, load_predictor, resize_square
from tfdldl.label_space import LabelSpace
from tfdldl.output_names import (LOGITS_SUFFIX, categorical_head_of,
                                 probability_output)
from tfdldl.tflite_quantize import (LOGITS, PHONE_MODE, convert_int8_logits,
                                    correct_weight_rounding_bias, head_from_logits,
                                    quantized_kernel, softmax)

# Also the int8_logits helpers callers know from this module (tfdldl.tflite_quantize).
__all__ = ["MODES", "PHONE_MODE", "DEFAULT_TOLERANCE", "DEFAULT_REPRESENTATIVE_COUNT",
           "CHECK_NAME", "convert", "convert_int8_logits", "correct_weight_rounding_bias",
           "quantized_kernel", "head_from_logits", "softmax", "LOGITS",
           "representative_faces", "TFLitePredictor", "compare_mae", "export_tflite", "main",
           "run"]

MODES = ("float16", "int8", PHONE_MODE)
DEFAULT_TOLERANCE = 0.05
DEFAULT_REPRESENTATIVE_COUNT = 500
CHECK_NAME = "tflite_check.json"


def _fixed_shape_function(saved_model_dir: str, input_size: int):
    """The SavedModel's ``predict_images`` as a concrete function of one [1, S, S, 3] face.

    Returns:
      (concrete_function, loaded_object); the loaded object must stay alive while the
      converter runs.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    if "predict_images" not in loaded.signatures:
        raise ValueError(f"{saved_model_dir} has no 'predict_images' signature (it has "
                         f"{sorted(loaded.signatures)}); export it with tfdldl.export")
    signature = loaded.signatures["predict_images"]

    if DISTRIBUTION not in signature.structured_outputs:
        raise ValueError(f"{saved_model_dir} predicts no distribution (a regression-head "
                         "model); the TFLite modes need a distribution or ranking head")

    kept = [name for name in signature.structured_outputs
            if name in (VALUE, DISTRIBUTION) or categorical_head_of(name)]

    @tf.function(input_signature=[tf.TensorSpec([1, input_size, input_size, 3], tf.float32,
                                                name="images")])
    def one_face(images):
        outputs = signature(images=images)
        return {name: outputs[name] for name in kept}

    return one_face.get_concrete_function(), loaded


def convert(saved_model_dir: str, input_size: int, mode: str,
            representative: np.ndarray | None = None) -> bytes:
    """Convert a tfdldl SavedModel to a TFLite flatbuffer.

    Args:
      saved_model_dir: a SavedModel version folder with the ``predict_images`` signature.
      input_size: S, the side of the face the TFLite model takes, pixels.
      mode: "float16" or "int8" (``int8_logits``: :func:`convert_int8_logits`).
      representative: for int8, float32 [M, S, S, 3] RGB 0..255 faces (a few hundred).
    Returns:
      The .tflite model bytes.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"unknown TFLite mode '{mode}'; choose one of {', '.join(MODES)}")
    if mode == PHONE_MODE:
        raise ValueError(f"mode {PHONE_MODE} converts a Keras model: use convert_int8_logits")
    function, loaded = _fixed_shape_function(saved_model_dir, input_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    else:
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")
        converter.representative_dataset = lambda: ([face[None]] for face in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter.convert()

def representative_faces(data_dir: str, split: str, count: int, input_size: int) -> np.ndarray:
    """The first ``count`` faces of ``split`` (file order), float32 [M, S, S, 3] RGB 0..255."""
    from tfdldl.evaluate import read_split
    from tfdldl.manifest import read_manifest

    faces, given = [], 0
    for batch in read_split(read_manifest(data_dir), split, 64):
        faces.append(resize_square(batch["image"][:count - given], input_size))
        given += len(faces[-1])
        if given == count:
            break
    return np.concatenate(faces)


class TFLitePredictor:
    """Runs a .tflite model face by face; follows :class:`tfdldl.inference.Predictor`.

    Models with ``value`` and ``distribution`` outputs (float16, int8) are read as they
    are (with each categorical head's ``<name>_probability``); an int8_logits model gives
    logits (and each head's ``<name>_logits``), turned into the distribution and the
    expectation (and the heads' probabilities) in float by :func:`head_from_logits`.
    """

    def __init__(self, model: bytes, label_space: LabelSpace | None,
                 source: str = "<tflite>"):
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter's move to LiteRT
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(model_content=model)
        self._runner = self._interpreter.get_signature_runner()
        self._input_name = next(iter(self._runner.get_input_details()))
        detail = self._interpreter.get_input_details()[0]
        self._input_dtype = detail["dtype"]
        self._scale, self._zero_point = detail["quantization"]
        self.input_size = int(detail["shape"][1])
        self.face_size = self.input_size  # a .tflite file records no training-face size
        self.framing = None  # nor its framing
        self.temperature = 1.0  # nor a calibration (tfdldl.calibration)
        self.label_space = label_space
        self.source = source

    def _quantize(self, face: np.ndarray) -> np.ndarray:
        if self._input_dtype == np.float32:
            return face.astype(np.float32)
        info = np.iinfo(self._input_dtype)
        quantized = np.round(face / self._scale + self._zero_point)
        return np.clip(quantized, info.min, info.max).astype(self._input_dtype)

    def raw_outputs(self, face: np.ndarray) -> dict[str, np.ndarray]:
        """One float32 [1, S, S, 3] face -> {"value", "distribution"(, "<name>_probability"
        ...)} or {"logits": [1, K](, "<name>_logits": [1, C] ...)}."""
        outputs = self._runner(**{self._input_name: self._quantize(face)})
        if VALUE in outputs:
            return {key: np.asarray(value, np.float32) for key, value in outputs.items()}
        if len(outputs) == 1:  # an age-only int8_logits model: its one output
            (logits,) = outputs.values()
            return {LOGITS: np.asarray(logits, np.float64)}
        return {key: np.asarray(value, np.float64) for key, value in outputs.items()}

    def _head_outputs(self, face: np.ndarray) -> dict[str, np.ndarray]:
        """One face -> the raw head outputs {"value": [1], "distribution": [1, K], ...}."""
        outputs = self.raw_outputs(face)
        if LOGITS not in outputs:
            return outputs
        value, distribution = head_from_logits(outputs[LOGITS], self.label_space.grid)
        head = {VALUE: value, DISTRIBUTION: distribution}
        for key, logits in outputs.items():
            if key.endswith(LOGITS_SUFFIX):
                head[probability_output(key[:-len(LOGITS_SUFFIX)])] = softmax(logits)
        return head

    def predict_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [N, H, W, 3] RGB 0..255 -> {"value": [N], "stddev": [N], "distribution":
        [N, K]} (+ "<name>_probability": [N, C] per categorical head)."""
        from tfdldl import heads
        from tfdldl.inference import numpy_outputs

        rows = [self._head_outputs(face[None])
                for face in resize_square(images, self.input_size)]
        raw = {key: np.concatenate([row[key].reshape(1, -1) for row in rows])
               for key in rows[0]}
        raw[VALUE] = raw[VALUE].reshape(-1)
        return numpy_outputs(heads.of_outputs(raw).summarise(raw, self.label_space.grid))

    def predict_encoded(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Encoded aligned faces -> the same dict as :meth:`predict_images`."""
        from tfdldl.image_io import decode_rgb

        return self.predict_images(np.stack(
            [decode_rgb(data, f"image {i}") for i, data in enumerate(encoded)]))


def compare_mae(reference: Predictor, candidate: Predictor, data_dir: str, split: str,
                tolerance: float = DEFAULT_TOLERANCE) -> dict[str, float | bool | int]:
    """MAE of both predictors on the same faces (no flip averaging) and its difference.

    Returns:
      {"count", "mae_reference", "mae_candidate", "mae_difference" (candidate − reference),
       "mean_abs_value_difference", "max_abs_value_difference" (mean and largest per-face
       |Δ prediction|), "tolerance", "within_tolerance"}, plus
       "max_abs_<name>_probability_difference" per categorical head both have.
    """
    from tfdldl import metrics
    from tfdldl.evaluate import collect_predictions
    from tfdldl.manifest import read_manifest

    manifest = read_manifest(data_dir)
    manifest.require_label_space(reference.label_space, what=f"the model {reference.source}")
    first = collect_predictions(reference, manifest, split, flip=False)
    second = collect_predictions(candidate, manifest, split, flip=False)
    mae_reference = float(metrics.mae(first.value, first.true))
    mae_candidate = float(metrics.mae(second.value, second.true))
    difference = mae_candidate - mae_reference
    row = {"count": int(len(first.true)), "mae_reference": mae_reference,
           "mae_candidate": mae_candidate, "mae_difference": difference,
           "mean_abs_value_difference": float(np.mean(np.abs(second.value - first.value))),
           "max_abs_value_difference": float(np.max(np.abs(second.value - first.value))),
           "tolerance": float(tolerance), "within_tolerance": bool(abs(difference) <= tolerance)}
    for key in first.probabilities.keys() & second.probabilities.keys():
        row[f"max_abs_{key}_difference"] = float(
            np.max(np.abs(second.probabilities[key] - first.probabilities[key])))
    return row


def export_tflite(model_path: str, data_dir: str, out_dir: str, modes: Sequence[str] = MODES,
                  representative_split: str = "train",
                  representative_count: int = DEFAULT_REPRESENTATIVE_COUNT,
                  check_split: str = "val", tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Write ``out_dir/model_<mode>.tflite`` for each mode and check each against the model.

    Args:
      model_path: SavedModel folder or .keras file (``int8_logits`` needs the .keras file).
      data_dir: TFRecord folder (representative faces and the check split).
      out_dir: output folder (created); also receives ``tflite_check.json``.
      modes: subset of :data:`MODES`.
      representative_split, representative_count: calibration faces (int8 modes).
      check_split: split on which MAEs are compared (keep it apart from the calibration
        split; never test when choosing a mode).
      tolerance: allowed |MAE difference|, label units.
    Returns:
      mode -> {"path", "bytes", **compare_mae(...)}; also written as tflite_check.json.
    Raises:
      ValueError: an unknown mode, or int8_logits asked of a SavedModel.
    """
    from tfdldl.inference import KerasPredictor

    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise ValueError(f"unknown TFLite mode(s) {unknown}; choose from {', '.join(MODES)}")
    reference = load_predictor(model_path)
    if PHONE_MODE in modes and not isinstance(reference, KerasPredictor):
        raise ValueError(f"mode {PHONE_MODE} needs the Keras layers: pass the run's .keras "
                         f"file (e.g. runs/<run>/model.keras) instead of {model_path}, or drop "
                         f"{PHONE_MODE} from the modes")
    size = reference.input_size
    os.makedirs(out_dir, exist_ok=True)
    faces = (representative_faces(data_dir, representative_split, representative_count, size)
             if any(mode != "float16" for mode in modes) else None)
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = None
        for mode in modes:
            if mode == PHONE_MODE:
                model = convert_int8_logits(reference.model, faces)
            else:
                saved_model = saved_model or _saved_model_dir(model_path, reference, scratch)
                model = convert(saved_model, size, mode, faces if mode == "int8" else None)
            path = os.path.join(out_dir, f"model_{mode}.tflite")
            with safe_io.atomic_file(path, text=False) as handle:
                handle.write(model)
            candidate = TFLitePredictor(model, reference.label_space, path)
            report[mode] = {"path": path, "bytes": len(model),
                            **compare_mae(reference, candidate, data_dir, check_split, tolerance)}
    with safe_io.atomic_file(os.path.join(out_dir, CHECK_NAME)) as handle:
        json.dump({"model": os.path.abspath(model_path), "data": os.path.abspath(data_dir),
                   "split": check_split, "representative_split": representative_split,
                   "representative_count": int(len(faces)) if faces is not None else 0,
                   "modes": report}, handle, indent=2)
    return report


def _saved_model_dir(model_path: str, predictor: Predictor, scratch: str) -> str:
    """The SavedModel folder to convert: the model's own, or a .keras file exported to scratch."""
    from tfdldl.inference import KerasPredictor

    if not isinstance(predictor, KerasPredictor):
        return predictor.source
    from tfdldl import export

    return export.export_saved_model(predictor.model, scratch, "tflite_source", 1)


def main(argv) -> int:
    """absl entry point: convert, check, print one line per mode; exit 1 when a check fails."""
    from absl import flags, logging

    from tfdldl.inference import ModelLoadError
    from tfdldl.manifest import ManifestError

    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel chatter
    if len(argv) > 1:
        print(f"unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    values = flags.FLAGS
    modes = [mode.strip() for mode in values.modes.split(",") if mode.strip()]
    try:
        report = export_tflite(values.model, values.data, values.out, modes,
                               values.representative_split, values.representative_count,
                               values.check_split, values.tolerance)
    except (ModelLoadError, ManifestError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for mode, row in report.items():
        verdict = "OK" if row["within_tolerance"] else "OUT OF TOLERANCE"
        print(f"{mode:11s} {row['bytes'] / 1e6:7.2f} MB  MAE model {row['mae_reference']:.4f}"
              f"  TFLite {row['mae_candidate']:.4f}  difference {row['mae_difference']:+.4f}"
              f" (tolerance {row['tolerance']:g}) {verdict}  -> {row['path']}")
    return 0 if all(row["within_tolerance"] for row in report.values()) else 1


def run() -> None:
    """Entry point of ``python -m tfdldl.tflite_export``."""
    from absl import app, flags

    flags.DEFINE_string("model", None, "SavedModel folder or .keras file.", required=True)
    flags.DEFINE_string("data", None, "TFRecord folder with manifest.json.", required=True)
    flags.DEFINE_string("out", None, "Output folder for the .tflite files.", required=True)
    flags.DEFINE_string("modes", ",".join(MODES),
                        f"Comma-separated subset of {', '.join(MODES)} ({PHONE_MODE}: the one "
                        "for phones; needs a .keras model).")
    flags.DEFINE_string("representative_split", "train", "Split giving int8 calibration faces.")
    flags.DEFINE_integer("representative_count", DEFAULT_REPRESENTATIVE_COUNT,
                         "Number of calibration faces.")
    flags.DEFINE_string("check_split", "val", "Split on which the MAEs are compared.")
    flags.DEFINE_float("tolerance", DEFAULT_TOLERANCE, "Allowed |MAE difference|, label units.")
    app.run(main)


if __name__ == "__main__":
    run()

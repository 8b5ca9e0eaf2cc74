"""TensorFlow Lite export for phones: float16 weights, or full-integer int8, and a check.

    python -m tfdldl.tflite_export --model saved_models/utkface_tiny/1 --data data/utkface \
        --out runs/tflite --modes float16,int8

The converter reads the SavedModel's ``predict_images`` signature (a ``.keras`` file is
first exported to a temporary SavedModel), pinned to one face of the model's input size:
float32 [1, S, S, 3] RGB 0..255 in, ``value`` [1] and ``distribution`` [1, K] out.

* ``float16``: weights stored as float16, computation in float32.
* ``int8``: full-integer quantisation; every op runs in int8, calibrated on a
  representative set of aligned faces read from the TFRecords (the train split by
  default). The input is uint8 pixels (scale ≈ 1, zero point 0: exact for 0..255);
  outputs stay float32 so callers need no dequantisation.

The check runs the .tflite interpreter and the SavedModel on the same split (no flip
averaging, same images) and reports both MAEs and their difference against a tolerance
(0.05 label units by default); the command exits 1 when a mode is out of tolerance.

Measured (TinyAgeNet 64 px, 6 short epochs on UTKFace, 2,010 test faces): float16 moved
the MAE by -0.007 years (within tolerance); full-integer int8 by -0.38 years, with single
faces off by up to ~8 years, and keeping the head (softmax, expectation) in float still
left -0.11. Post-training int8 is a size/speed trade; check it on your own model.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Callable, Iterator, Sequence

import numpy as np

from tfdldl.inference import Predictor, load_predictor, resize_square
from tfdldl.label_space import LabelSpace

MODES = ("float16", "int8")
DEFAULT_TOLERANCE = 0.05
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

    @tf.function(input_signature=[tf.TensorSpec([1, input_size, input_size, 3], tf.float32,
                                                name="images")])
    def one_face(images):
        outputs = signature(images=images)
        return {"value": outputs["value"], "distribution": outputs["distribution"]}

    return one_face.get_concrete_function(), loaded


def convert(saved_model_dir: str, input_size: int, mode: str,
            representative: Callable[[], Iterator[np.ndarray]] | None = None) -> bytes:
    """Convert a tfdldl SavedModel to a TFLite flatbuffer.

    Args:
      saved_model_dir: a SavedModel version folder with the ``predict_images`` signature.
      input_size: S, the side of the face the TFLite model takes, pixels.
      mode: "float16" or "int8".
      representative: for int8, a callable returning an iterator of float32 [1, S, S, 3]
        RGB 0..255 faces (a few hundred suffice).
    Returns:
      The .tflite model bytes.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"unknown TFLite mode '{mode}'; choose one of {', '.join(MODES)}")
    function, loaded = _fixed_shape_function(saved_model_dir, input_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    else:
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")
        converter.representative_dataset = lambda: ([face] for face in representative())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter.convert()


def representative_faces(data_dir: str, split: str, count: int,
                         input_size: int) -> Callable[[], Iterator[np.ndarray]]:
    """A callable yielding up to ``count`` float32 [1, S, S, 3] faces of ``split``, in file order."""
    from tfdldl.evaluate import read_split
    from tfdldl.manifest import read_manifest

    manifest = read_manifest(data_dir)

    def faces():
        given = 0
        for batch in read_split(manifest, split, 32):
            for image in resize_square(batch["image"], input_size):
                if given == count:
                    return
                given += 1
                yield image[None]

    return faces


class TFLitePredictor:
    """Runs a .tflite model face by face; follows :class:`tfdldl.inference.Predictor`."""

    def __init__(self, model: bytes, label_space: LabelSpace, source: str = "<tflite>"):
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter's move to LiteRT
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(model_content=model)
        self._runner = self._interpreter.get_signature_runner()
        detail = self._interpreter.get_input_details()[0]
        self._input_dtype = detail["dtype"]
        self._scale, self._zero_point = detail["quantization"]
        self.input_size = int(detail["shape"][1])
        self.label_space = label_space
        self.source = source

    def _quantize(self, face: np.ndarray) -> np.ndarray:
        if self._input_dtype == np.float32:
            return face.astype(np.float32)
        info = np.iinfo(self._input_dtype)
        quantized = np.round(face / self._scale + self._zero_point)
        return np.clip(quantized, info.min, info.max).astype(self._input_dtype)

    def predict_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [N, H, W, 3] RGB 0..255 -> {"value": [N], "stddev": [N], "distribution": [N, K]}."""
        from tfdldl.inference import distribution_stddev

        values, distributions = [], []
        for face in resize_square(images, self.input_size):
            outputs = self._runner(images=self._quantize(face[None]))
            values.append(np.asarray(outputs["value"], np.float32).reshape(-1))
            distributions.append(np.asarray(outputs["distribution"], np.float32))
        distribution = np.concatenate(distributions)
        return {"value": np.concatenate(values), "distribution": distribution,
                "stddev": distribution_stddev(distribution, self.label_space.grid)}

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
       "max_abs_value_difference" (largest per-face |Δ prediction|), "tolerance",
       "within_tolerance"}.
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
    return {"count": int(len(first.true)), "mae_reference": mae_reference,
            "mae_candidate": mae_candidate, "mae_difference": difference,
            "max_abs_value_difference": float(np.max(np.abs(second.value - first.value))),
            "tolerance": float(tolerance), "within_tolerance": bool(abs(difference) <= tolerance)}


def export_tflite(model_path: str, data_dir: str, out_dir: str, modes: Sequence[str] = MODES,
                  representative_split: str = "train", representative_count: int = 200,
                  check_split: str = "test", tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Write ``out_dir/model_<mode>.tflite`` for each mode and check each against the model.

    Args:
      model_path: SavedModel folder or .keras file.
      data_dir: TFRecord folder (representative faces and the check split).
      out_dir: output folder (created); also receives ``tflite_check.json``.
      modes: subset of ("float16", "int8").
      representative_split, representative_count: calibration faces for int8.
      check_split: split on which MAEs are compared.
      tolerance: allowed |MAE difference|, label units.
    Returns:
      mode -> {"path", "bytes", **compare_mae(...)}; also written as tflite_check.json.
    """
    reference = load_predictor(model_path)
    size = reference.input_size
    os.makedirs(out_dir, exist_ok=True)
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = _saved_model_dir(model_path, reference, scratch)
        for mode in modes:
            representative = (representative_faces(data_dir, representative_split,
                                                   representative_count, size)
                              if mode == "int8" else None)
            model = convert(saved_model, size, mode, representative)
            path = os.path.join(out_dir, f"model_{mode}.tflite")
            with open(path + ".partial", "wb") as handle:
                handle.write(model)
            os.replace(path + ".partial", path)
            candidate = TFLitePredictor(model, reference.label_space, path)
            report[mode] = {"path": path, "bytes": len(model),
                            **compare_mae(reference, candidate, data_dir, check_split, tolerance)}
    with open(os.path.join(out_dir, CHECK_NAME), "w", encoding="utf-8") as handle:
        json.dump({"model": os.path.abspath(model_path), "data": os.path.abspath(data_dir),
                   "split": check_split, "modes": report}, handle, indent=2)
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
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        print(f"error: unknown mode(s) {unknown}; choose from {', '.join(MODES)}",
              file=sys.stderr)
        return 2
    try:
        report = export_tflite(values.model, values.data, values.out, modes,
                               values.representative_split, values.representative_count,
                               values.check_split, values.tolerance)
    except (ModelLoadError, ManifestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for mode, row in report.items():
        verdict = "OK" if row["within_tolerance"] else "OUT OF TOLERANCE"
        print(f"{mode:8s} {row['bytes'] / 1e6:7.2f} MB  MAE SavedModel {row['mae_reference']:.4f}"
              f"  TFLite {row['mae_candidate']:.4f}  difference {row['mae_difference']:+.4f}"
              f" (tolerance {row['tolerance']:g}) {verdict}  -> {row['path']}")
    return 0 if all(row["within_tolerance"] for row in report.values()) else 1


def run() -> None:
    """Entry point of ``python -m tfdldl.tflite_export``."""
    from absl import app, flags

    flags.DEFINE_string("model", None, "SavedModel folder or .keras file.", required=True)
    flags.DEFINE_string("data", None, "TFRecord folder with manifest.json.", required=True)
    flags.DEFINE_string("out", None, "Output folder for the .tflite files.", required=True)
    flags.DEFINE_string("modes", ",".join(MODES), "Comma-separated: float16, int8.")
    flags.DEFINE_string("representative_split", "train", "Split giving int8 calibration faces.")
    flags.DEFINE_integer("representative_count", 200, "Number of calibration faces.")
    flags.DEFINE_string("check_split", "test", "Split on which the MAEs are compared.")
    flags.DEFINE_float("tolerance", DEFAULT_TOLERANCE, "Allowed |MAE difference|, label units.")
    app.run(main)


if __name__ == "__main__":
    run()

"""Evaluate a trained model on a TFRecord split: ``results.json`` plus a visual report.

    python -m tfdldl.evaluate --model saved_models/utkface_tinyagenet --data data/utkface_128 --out runs/eval
    python -m tfdldl.evaluate --model saved_models/utkface_tinyagenet --data data/utkface_128 --split val --calibrate

Metrics (NumPy, from :mod:`tfdldl.metrics`): MAE, bias (mean predicted − true), RMSE,
Pearson correlation, the cumulative score curve CS(θ), the ChaLearn ε-error when the data
carries a σ per face (manifest sigma policy "per_sample"), and MAE/bias per label band
(age decades). Predictions are averaged over each face and its mirror image (the paper's
test protocol) unless ``--no_flip``.

Slices: MAE, bias and CS@θ (θ = 5 years for age) per gender and per the data's group codes
(UTKFace: race, named in the data config), with the largest MAE gap between groups.

Categorical heads (e.g. gender, race; tfdldl.heads_categorical): per head, accuracy over
faces of known code and the C x C confusion matrix (rows true, columns predicted, with the
model's class names); the MAE per class of a head is the slice under its name above.

Age groups (an age model): exact and one-off accuracy over age groups
(:mod:`tfdldl.age_groups`; ``--age_groups`` gives their lower edges, default the Adience
groups made contiguous: 0-3, 4-7, 8-14, 15-24, 25-37, 38-47, 48-59, 60+).

Attention (a model built with ``model.attention``): the report overlays its CBAM spatial
map on the best and worst faces (:mod:`tfdldl.attention_maps`); for a model without one
the report says so.

Uncertainty (:mod:`tfdldl.calibration`): how often the 50/80/90 % central intervals of the
predicted distribution hold the true label, and their mean width, before and after the
model's stored temperature. ``--calibrate`` fits the temperature on the evaluated split
(use the validation split) and stores it in the SavedModel, where predict applies it.

Modules: :mod:`tfdldl.evaluate_data` (reading a split's predictions),
:mod:`tfdldl.evaluate_metrics` (results.json), :mod:`tfdldl.evaluate_summary` (the printed
lines), :mod:`tfdldl.report` (the plots and the page); this one runs them, and the CLI.

The model must have been trained on the data's label space: a mismatch is refused
before any prediction (``Manifest.require_label_space``).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from tfdldl import calibration, cli
from tfdldl.age_groups import ADIENCE_AGE_GROUPS, check_edges, parse_age_groups
from tfdldl.evaluate_data import (UNKNOWN_CODE, SplitPredictions, collect_predictions,
                                  decode_jpegs, read_split)
from tfdldl.evaluate_metrics import (CODE_NAMES, band_edges, band_table, compute_results,
                                     confusion, default_thetas, interval_results, slice_table,
                                     slice_theta, slices)
from tfdldl.evaluate_summary import summary
from tfdldl.inference import Predictor
from tfdldl.jsonio import write_json
from tfdldl.output_names import categorical_head_of

# Also the names callers know from this module (split out into the evaluate_* modules).
__all__ = ["RESULTS_NAME", "GRID_FACES", "evaluate", "face_groups", "calibrate",
           "CalibrationError", "main", "run", "UNKNOWN_CODE", "SplitPredictions",
           "collect_predictions", "decode_jpegs", "read_split", "CODE_NAMES", "band_edges",
           "band_table", "compute_results", "default_thetas", "confusion",
           "interval_results", "slice_table", "slice_theta", "slices", "summary"]

RESULTS_NAME = "results.json"
# Faces of each kind in the report's best/worst grid.
GRID_FACES = 6


def face_groups(predictions: SplitPredictions, count: int = GRID_FACES,
                predictor: Predictor | None = None):
    """(title, [FaceSample]) groups of the best and worst predicted faces for the report.

    With a ``predictor`` whose model has attention, each face also carries its attention
    overlay (:func:`tfdldl.attention_maps.overlays_for`).
    """
    from tfdldl.attention_maps import overlays_for
    from tfdldl.image_io import decode_rgb
    from tfdldl.report import FaceSample, select_best_worst

    best, worst = select_best_worst(predictions.true, predictions.value, count)
    overlay = overlays_for(predictor) if predictor is not None else None

    def samples(indexes):
        faces = [decode_rgb(predictions.encoded[i], f"record {i}") for i in indexes]
        overlays = overlay(faces) if overlay is not None and faces else [None] * len(faces)
        return [FaceSample(
            image=face, true=float(predictions.true[i]), predicted=float(predictions.value[i]),
            distribution=(None if predictions.distribution is None
                          else predictions.distribution[i]), attention=heat)
            for i, face, heat in zip(indexes, faces, overlays)]

    return [("best predicted", samples(best)), ("worst predicted", samples(worst))]


class CalibrationError(ValueError):
    """A model that cannot be calibrated (not a SavedModel, or no distribution output)."""


def calibrate(predictor: Predictor, predictions: SplitPredictions, data: str,
              split: str, flip: bool) -> dict[str, Any]:
    """Fit the temperature on ``predictions`` and store it in the predictor's SavedModel.

    Sets ``predictor.temperature``. Returns the stored record: {"temperature", "fitted_on":
    {"data", "split", "count", "flip_averaged"}, "nll": {"before", "after"} (nats)}.

    Raises:
      CalibrationError: a .keras/.tflite model (nowhere to store it) or no distribution.
    """
    if predictions.distribution is None:
        raise CalibrationError(f"{predictor.source} predicts no distribution: there is "
                               "nothing to calibrate")
    if not os.path.isdir(predictor.source):
        raise CalibrationError(f"{predictor.source} is not a SavedModel folder; calibration "
                               "is stored in a SavedModel's assets (export it first)")
    grid = predictor.label_space.grid
    temperature = calibration.fit_temperature(predictions.distribution, predictions.true, grid)
    record = {
        "temperature": temperature,
        "fitted_on": {"data": data, "split": split, "count": int(len(predictions.true)),
                      "flip_averaged": flip},
        "nll": {"before": calibration.negative_log_likelihood(
                    predictions.distribution, predictions.true, grid),
                "after": calibration.negative_log_likelihood(
                    predictions.distribution, predictions.true, grid, temperature)},
    }
    calibration.write_calibration(predictor.source, record)
    predictor.temperature = temperature
    return record


def evaluate(model_path: str | None, data_dir: str, split: str = "test",
             out_dir: str | None = None, flip: bool = True, batch_size: int = 64,
             report: bool = True, calibrate_model: bool = False,
             progress: bool = False,
             age_groups: Sequence[float] = ADIENCE_AGE_GROUPS) -> dict[str, Any]:
    """Evaluate a model on ``data_dir``'s ``split``; write results.json (and the report).

    Args:
      model_path: SavedModel (version or model folder) or .keras file; None: the shipped
        model (tfdldl.api.resolve_model).
      calibrate_model: fit the temperature on this split first and store it in the model
        (:func:`calibrate`); results then carry a "calibration" record.
      progress: show a progress bar on stderr.
      age_groups: lower edges of the age groups, years (:mod:`tfdldl.age_groups`).
    Returns:
      The results dict (also written to ``out_dir/results.json`` when out_dir is given).
    Raises:
      ModelLoadError, ManifestError: bad model, bad data or mismatched label spaces.
      CalibrationError: ``calibrate_model`` on a model that cannot store it.
      ValueError: ``age_groups`` that are not increasing ages (before any prediction).
      ReportError: report requested but matplotlib missing (results.json is written first).
    """
    from tfdldl.api import resolve_model
    from tfdldl.inference import load_predictor
    from tfdldl.manifest import read_manifest

    check_edges(age_groups)
    manifest = read_manifest(data_dir)
    predictor = load_predictor(resolve_model(model_path))
    model_path = predictor.source
    manifest.require_label_space(predictor.label_space, what=f"the model {model_path}")
    manifest.require_framing(predictor.framing, what=f"the model {model_path}")
    require_class_columns(predictor, manifest, what=f"the model {model_path}")
    predictions = collect_predictions(predictor, manifest, split, batch_size, flip, progress)
    fitted = (calibrate(predictor, predictions, manifest.root, split, flip)
              if calibrate_model else None)
    per_sample = manifest.sigma.get("policy") == "per_sample"
    results = {
        "model": os.path.abspath(model_path), "data": manifest.root, "split": split,
        "flip_averaged": flip, "label_space": predictor.label_space.to_dict(),
        "sigma_policy": manifest.sigma.get("policy"),
        **compute_results(predictions, predictor.label_space, per_sample,
                          predictor.temperature, manifest.group_names(),
                          predictor.class_names, predictor.class_attributes,
                          age_groups, manifest.task),
    }
    if fitted is not None:
        results["calibration"] = fitted
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, RESULTS_NAME), results)
        if report:
            from tfdldl.report import write_report

            write_report(out_dir, results, predictions.true, predictions.value,
                         predictor.label_space,
                         face_groups(predictions, predictor=predictor))
    return results


def require_class_columns(predictor: Predictor, manifest, what: str) -> None:
    """Refuse data with more group codes (its manifest's group labels) than a categorical
    head on them has classes: the head's confusion matrix and MAE per class would have no
    column for the codes past its names.

    Raises:
      ManifestError: naming the head, both sets of names and the fix.
    """
    from tfdldl.example_schema import GROUP
    from tfdldl.manifest import ManifestError

    group, labels = manifest.group_names()
    for output, names in predictor.class_names.items():
        if predictor.class_attributes.get(output) == GROUP and len(names) < len(labels):
            raise ManifestError(
                f"{manifest.root} has {group or GROUP} codes 0..{len(labels) - 1} "
                f"({', '.join(labels)}), but the {categorical_head_of(output)} head of {what} "
                f"has only {len(names)} classes ({', '.join(names)}); evaluate on data whose "
                "groups the model knows, or train the head with one name per code")


def flag_problems(values) -> list[str]:
    """Everything wrong with evaluate's flags that shows without a model (unreadable data or
    split, a missing model path, a file where the --out folder goes, a bad batch size or
    age groups), each a line naming the flag and the fix; checked before TensorFlow loads.
    """
    from tfdldl.manifest import ManifestError, read_manifest

    problems = []
    try:
        read_manifest(values.data).shards(values.split)
    except ManifestError as error:
        problems.append(f"--data {values.data} --split {values.split}: {error}")
    if values.model and not os.path.exists(values.model):
        problems.append(f"--model {values.model} does not exist; pass a SavedModel folder "
                        "(saved_models/<name>/<version>) or a .keras file")
    if values.out and os.path.exists(values.out) and not os.path.isdir(values.out):
        problems.append(f"--out {values.out} is a file; give a folder for results.json and "
                        "the report")
    if values.batch_size < 1:
        problems.append(f"--batch_size must be >= 1, got {values.batch_size}")
    try:
        parse_age_groups(values.age_groups)
    except ValueError as error:
        problems.append(f"--age_groups: {error}")
    return problems


def main(argv) -> int:
    """absl entry point: evaluate, print a summary; exit 2 with a message on bad input (all
    the flags' problems at once, found before TensorFlow is imported)."""
    from absl import flags

    if len(argv) > 1:
        print(f"unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    values = flags.FLAGS
    problems = flag_problems(values)
    if problems:
        print("\n".join(f"error: {problem}" for problem in problems), file=sys.stderr)
        return 2
    if values.calibrate and values.split != "val":
        print(f"note: fitting the temperature on the '{values.split}' split; fit it on "
              "'val' to keep the test split unseen", file=sys.stderr)
    cli.import_tensorflow_quietly()
    from tfdldl.inference import ModelLoadError
    from tfdldl.manifest import ManifestError
    from tfdldl.report import ReportError
    from tfdldl.serving_model import ServingLoadError

    age_groups = parse_age_groups(values.age_groups)
    try:
        results = evaluate(values.model, values.data, values.split, values.out,
                           flip=not values.no_flip, batch_size=values.batch_size,
                           report=not values.no_report, calibrate_model=values.calibrate,
                           progress=values.progress, age_groups=age_groups)
    except (ModelLoadError, ManifestError, CalibrationError, ServingLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ReportError as error:
        print(f"results.json written; no report: {error}", file=sys.stderr)
        return 1
    print(f"model: {results['model']}")
    print(summary(results))
    if values.out:
        print(f"wrote {os.path.join(values.out, RESULTS_NAME)}"
              + ("" if values.no_report else " and report.html"))
    return 0


def define_flags() -> None:
    """The command-line flags of ``python -m tfdldl.evaluate``."""
    from absl import flags

    flags.DEFINE_string("model", None, "SavedModel folder (saved_models/<name>/<version>, or "
                        "saved_models/<name> for its highest version) or .keras file. "
                        "Default: the shipped saved_models/utkface_tinyagenet.")
    flags.DEFINE_string("data", None, "TFRecord folder with manifest.json.", required=True)
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_string("out", None, "Folder for results.json and the report "
                        "(nothing is written without it).")
    flags.DEFINE_bool("no_flip", False, "Do not average each face with its mirror image.")
    flags.DEFINE_bool("no_report", False, "Write results.json only (no matplotlib needed).")
    flags.DEFINE_integer("batch_size", 64, "Faces per forward pass.")
    flags.DEFINE_bool("calibrate", False, "Fit the interval temperature on this split (use "
                      "--split val) and store it in the SavedModel's assets.")
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.")
    flags.DEFINE_string("age_groups", ",".join(f"{edge:g}" for edge in ADIENCE_AGE_GROUPS),
                        "Lower edges of the age groups for the age-group accuracy, years, "
                        "comma-separated (default: the Adience groups made contiguous, "
                        "0-3 4-7 8-14 15-24 25-37 38-47 48-59 60+).")


def run() -> None:
    """Console-script entry point (``tfdldl-evaluate``); main imports TensorFlow once the
    flags are checked."""
    cli.run_main(main, define_flags)


if __name__ == "__main__":
    run()

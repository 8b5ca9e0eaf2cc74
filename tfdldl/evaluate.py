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

Gender (a model with the gender head): accuracy over faces of known gender and the C x C
confusion matrix (rows true, columns predicted, with the model's class names).

Uncertainty (:mod:`tfdldl.calibration`): how often the 50/80/90 % central intervals of the
predicted distribution hold the true label, and their mean width, before and after the
model's stored temperature. ``--calibrate`` fits the temperature on the evaluated split
(use the validation split) and stores it in the SavedModel, where predict applies it.

The model must have been trained on the data's label space: a mismatch is refused
before any prediction (``Manifest.require_label_space``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Iterator, Sequence

import numpy as np

from tfdldl import calibration, cli, tfrecord_reader
from tfdldl.inference import Predictor, predict_flip_averaged
from tfdldl.label_space import LabelSpace
from tfdldl.jsonio import write_json
from tfdldl.manifest import Manifest
from tfdldl.output_names import GENDER_PROBABILITY

RESULTS_NAME = "results.json"
# Faces of each kind in the report's best/worst grid.
GRID_FACES = 6
# Number of bands the label range is cut into when it is not age (decades).
DEFAULT_BANDS = 8
AGE_BAND_WIDTH = 10.0
# Names of the schema's gender codes 0 and 1 (tfdldl.example_schema).
GENDER_NAMES = ("male", "female")
# Unknown gender / group code in the records.
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
      gender: int32 [N], 0 male, 1 female, -1 unknown.
      group: int32 [N], the data's group codes (UTKFace: race), -1 unknown.
      gender_probability: float32 [N, C] predicted by a model with the gender head, or None.
    """

    true: np.ndarray
    sigma: np.ndarray
    value: np.ndarray
    stddev: np.ndarray
    distribution: np.ndarray | None
    encoded: list[bytes]
    gender: np.ndarray
    group: np.ndarray
    gender_probability: np.ndarray | None = None


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
      "label", "sigma": float32 [B]; "gender", "group": int32 [B].
    """
    faces = tfrecord_reader.read_split(manifest, split)
    for start in range(0, len(faces), batch_size):
        stop = start + batch_size
        encoded = faces.jpegs[start:stop]
        yield {"encoded": encoded, "image": decode_jpegs(encoded),
               "label": faces.labels[start:stop], "sigma": faces.sigmas[start:stop],
               "gender": faces.genders[start:stop], "group": faces.groups[start:stop]}


def collect_predictions(predictor: Predictor, manifest: Manifest, split: str,
                        batch_size: int = 64, flip: bool = True,
                        progress: bool = False) -> SplitPredictions:
    """Run ``predictor`` over a whole split (flip-averaged when ``flip``).

    ``progress`` shows a bar over the split's faces on stderr.
    """
    from tqdm import tqdm

    parts: dict[str, list] = {"true": [], "sigma": [], "value": [], "stddev": [],
                              "distribution": [], "encoded": [], "gender": [], "group": [],
                              GENDER_PROBABILITY: []}
    bar = tqdm(total=manifest.counts.get(split), unit="face", disable=not progress,
               file=sys.stderr, desc=f"evaluating {split}", leave=False)
    for batch in read_split(manifest, split, batch_size):
        outputs = (predict_flip_averaged(predictor, batch["image"]) if flip
                   else predictor.predict_images(batch["image"]))
        bar.update(len(batch["label"]))
        parts["true"].append(batch["label"])
        parts["sigma"].append(batch["sigma"])
        parts["gender"].append(batch["gender"])
        parts["group"].append(batch["group"])
        parts["value"].append(outputs["value"].reshape(-1))
        parts["stddev"].append(outputs["stddev"].reshape(-1))
        for key in ("distribution", GENDER_PROBABILITY):
            if key in outputs:
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
        gender=_codes(parts["gender"], len(parts["encoded"])),
        group=_codes(parts["group"], len(parts["encoded"])),
        gender_probability=(np.concatenate(parts[GENDER_PROBABILITY]).astype(np.float32)
                            if parts[GENDER_PROBABILITY] else None))


def _codes(chunks: list[np.ndarray], count: int) -> np.ndarray:
    """int32 [count] codes; all unknown when the reader gave none (records without them)."""
    codes = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros(0, np.int32)
    return codes if len(codes) == count else np.full(count, UNKNOWN_CODE, np.int32)


def band_edges(label_space: LabelSpace) -> np.ndarray:
    """Band boundaries over [minimum, maximum]: decades for age, else 8 equal bands; float64."""
    low, high = float(label_space.minimum), float(label_space.maximum)
    if label_space.name == "age":
        start = np.floor(low / AGE_BAND_WIDTH) * AGE_BAND_WIDTH
        edges = np.arange(start, high + AGE_BAND_WIDTH, AGE_BAND_WIDTH)
        edges = edges[edges < high]
        return np.append(edges, high)
    return np.linspace(low, high, DEFAULT_BANDS + 1)


def band_table(true: np.ndarray, predicted: np.ndarray, edges: np.ndarray) -> list[dict[str, Any]]:
    """MAE and bias per band of the TRUE label; bands are [low, high), the last includes high.

    Returns:
      One dict per band: "low", "high", "count", "mae", "bias" (None when empty).
    """
    true = np.asarray(true, np.float64)
    error = np.asarray(predicted, np.float64) - true
    rows = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = (true >= low) & ((true <= high) if last else (true < high))
        count = int(inside.sum())
        rows.append({"low": float(low), "high": float(high), "count": count,
                     "mae": float(np.abs(error[inside]).mean()) if count else None,
                     "bias": float(error[inside].mean()) if count else None})
    return rows


def default_thetas(label_space: LabelSpace) -> np.ndarray:
    """CS thresholds: 11 values from 0 to a tenth of the label range (0..10 years for age)."""
    return np.linspace(0.0, (label_space.maximum - label_space.minimum) / 10.0, 11)


def slice_theta(label_space: LabelSpace) -> float:
    """The CS threshold of the slice tables: 5 years for age, else a twentieth of the range."""
    from tfdldl.metrics import AGE_CS_THETA

    if label_space.name == "age":
        return AGE_CS_THETA
    return (label_space.maximum - label_space.minimum) / 20.0


def slice_table(true: np.ndarray, predicted: np.ndarray, codes: np.ndarray,
                names: Sequence[str], theta: float) -> dict[str, Any] | None:
    """MAE, bias and CS@θ per group code, and the largest MAE gap between groups.

    Args:
      true, predicted: float [N], label units.
      codes: int [N] group codes; -1 (unknown) is left out.
      names: the name of code i at position i (codes beyond it are called "code i").
      theta: the CS threshold, label units.
    Returns:
      None with fewer than 2 known groups, else {"theta", "unknown": count of -1,
      "groups": [{"code", "name", "count", "mae", "bias", "cs"}], "largest_gap":
      {"mae": worst - best MAE, "worst": name, "best": name}}.
    """
    error = np.asarray(predicted, np.float64) - np.asarray(true, np.float64)
    codes = np.asarray(codes)
    groups = []
    for code in sorted(set(codes.tolist()) - {UNKNOWN_CODE}):
        inside = error[codes == code]
        groups.append({"code": int(code),
                       "name": names[code] if 0 <= code < len(names) else f"code {code}",
                       "count": int(len(inside)), "mae": float(np.abs(inside).mean()),
                       "bias": float(inside.mean()),
                       "cs": float(np.mean(np.abs(inside) <= theta))})
    if len(groups) < 2:
        return None
    worst = max(groups, key=lambda group: group["mae"])
    best = min(groups, key=lambda group: group["mae"])
    return {"theta": float(theta), "unknown": int(np.sum(codes == UNKNOWN_CODE)),
            "groups": groups, "largest_gap": {"mae": worst["mae"] - best["mae"],
                                              "worst": worst["name"], "best": best["name"]}}


def slices(predictions: SplitPredictions, label_space: LabelSpace,
           group_name: str, group_labels: Sequence[str],
           gender_names: Sequence[str] = GENDER_NAMES) -> dict[str, Any]:
    """{"gender": slice_table, <group_name or "group">: slice_table}, without empty ones;
    gender codes are named by ``gender_names`` (the model's, with the gender head)."""
    theta = slice_theta(label_space)
    tables = {"gender": slice_table(predictions.true, predictions.value, predictions.gender,
                                    gender_names, theta),
              group_name or "group": slice_table(predictions.true, predictions.value,
                                                 predictions.group, group_labels, theta)}
    return {name: table for name, table in tables.items() if table is not None}


def interval_results(predictions: SplitPredictions, label_space: LabelSpace,
                     temperature: float) -> dict[str, Any] | None:
    """Coverage and mean width of the 50/80/90 % central intervals, raw and calibrated.

    Returns:
      None for a model without a distribution, else {"temperature": T, "uncalibrated":
      {mass: {"coverage", "mean_width"}}, "calibrated": the same under T (equal to
      uncalibrated when T is 1)}.
    """
    if predictions.distribution is None:
        return None
    grid = label_space.grid
    raw = calibration.interval_coverage(predictions.distribution, predictions.true, grid)
    scaled = (raw if temperature == 1.0 else calibration.interval_coverage(
        calibration.apply_temperature(predictions.distribution, temperature),
        predictions.true, grid))
    return {"temperature": float(temperature), "uncalibrated": raw, "calibrated": scaled}


def compute_results(predictions: SplitPredictions, label_space: LabelSpace,
                    per_sample_sigma: bool, temperature: float = 1.0,
                    groups: tuple[str, Sequence[str]] = ("", ()),
                    gender_names: Sequence[str] = GENDER_NAMES) -> dict[str, Any]:
    """The metric dict written to results.json.

    Args:
      predictions: the split's labels and predictions.
      label_space: the model's (= the data's) label space.
      per_sample_sigma: whether the records' σ are per-face annotations (ChaLearn);
        ε-error is only meaningful then and is None otherwise.
      temperature: the model's calibration temperature (1: uncalibrated).
      groups: (what the records' group codes are, name per code), from the manifest.
      gender_names: the model's gender class names, column order of gender_probability
        (= record codes); they also name the age slices by gender.
    Returns:
      {"count", "mae", "bias", "rmse", "pearson", "epsilon_error",
       "mean_predicted_stddev", "cs": {"thetas", "values"}, "cs_at": {θ: CS}, "bands",
       "slices": {attribute: slice_table}, "intervals": interval_results,
       "gender_accuracy": share of known-gender faces whose most probable gender is theirs
       (None without the gender head or known genders), "gender_confusion":
       :func:`gender_confusion`}.
    """
    from tfdldl import metrics

    true, value = predictions.true, predictions.value
    thetas = default_thetas(label_space)
    curve = np.asarray(metrics.cs_curve(value, true, thetas), np.float64)
    stddev = predictions.stddev[np.isfinite(predictions.stddev)]
    return {
        "count": int(len(true)),
        "mae": float(metrics.mae(value, true)),
        "bias": float(np.mean(value.astype(np.float64) - true)),
        "rmse": float(metrics.rmse(value, true)),
        "pearson": _finite_or_none(metrics.pearson(value, true)) if len(true) > 1 else None,
        "epsilon_error": (float(metrics.epsilon_error(value, true, predictions.sigma))
                          if per_sample_sigma else None),
        "mean_predicted_stddev": float(stddev.mean()) if len(stddev) else None,
        "cs": {"thetas": [float(t) for t in thetas], "values": [float(c) for c in curve]},
        "cs_at": {f"{t:g}": float(c) for t, c in zip(thetas, curve)},
        "bands": band_table(true, value, band_edges(label_space)),
        "slices": slices(predictions, label_space, *groups, gender_names),
        "intervals": interval_results(predictions, label_space, temperature),
        "gender_accuracy": (None if predictions.gender_probability is None else
                            metrics.class_accuracy(predictions.gender_probability,
                                                   predictions.gender)),
        "gender_confusion": gender_confusion(predictions, gender_names),
    }


def gender_confusion(predictions: SplitPredictions,
                     names: Sequence[str]) -> dict[str, Any] | None:
    """The gender confusion matrix over faces of known gender.

    Args:
      predictions: with ``gender_probability`` [N, C] (None: no gender head).
      names: the C class names, column order of gender_probability (= record codes).
    Returns:
      None without the gender head, else {"class_names": names, "counts": int [C][C]
      (row = true gender, column = predicted, the most probable class), "unknown": faces
      of unknown gender left out}.
    """
    from tfdldl import metrics

    if predictions.gender_probability is None:
        return None
    counts = metrics.confusion_matrix(predictions.gender_probability, predictions.gender)
    return {"class_names": list(names), "counts": counts.tolist(),
            "unknown": int(np.sum(predictions.gender < 0))}


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. Pearson of constant predictions) is None."""
    value = float(value)
    return value if np.isfinite(value) else None


def face_groups(predictions: SplitPredictions, count: int = GRID_FACES):
    """(title, [FaceSample]) groups of the best and worst predicted faces for the report."""
    from tfdldl.image_io import decode_rgb
    from tfdldl.report import FaceSample, select_best_worst

    best, worst = select_best_worst(predictions.true, predictions.value, count)

    def samples(indexes):
        return [FaceSample(
            image=decode_rgb(predictions.encoded[i], f"record {i}"),
            true=float(predictions.true[i]), predicted=float(predictions.value[i]),
            distribution=(None if predictions.distribution is None
                          else predictions.distribution[i]))
            for i in indexes]

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
             progress: bool = False) -> dict[str, Any]:
    """Evaluate a model on ``data_dir``'s ``split``; write results.json (and the report).

    Args:
      model_path: SavedModel (version or model folder) or .keras file; None: the shipped
        model (tfdldl.api.resolve_model).
      calibrate_model: fit the temperature on this split first and store it in the model
        (:func:`calibrate`); results then carry a "calibration" record.
      progress: show a progress bar on stderr.
    Returns:
      The results dict (also written to ``out_dir/results.json`` when out_dir is given).
    Raises:
      ModelLoadError, ManifestError: bad model, bad data or mismatched label spaces.
      CalibrationError: ``calibrate_model`` on a model that cannot store it.
      ReportError: report requested but matplotlib missing (results.json is written first).
    """
    from tfdldl.api import resolve_model
    from tfdldl.inference import load_predictor
    from tfdldl.manifest import read_manifest

    manifest = read_manifest(data_dir)
    predictor = load_predictor(resolve_model(model_path))
    model_path = predictor.source
    manifest.require_label_space(predictor.label_space, what=f"the model {model_path}")
    manifest.require_framing(predictor.framing, what=f"the model {model_path}")
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
                          predictor.class_names.get(GENDER_PROBABILITY, GENDER_NAMES)),
    }
    if fitted is not None:
        results["calibration"] = fitted
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, RESULTS_NAME), results)
        if report:
            from tfdldl.report import write_report

            write_report(out_dir, results, predictions.true, predictions.value,
                         predictor.label_space, face_groups(predictions))
    return results


def summary(results: dict[str, Any]) -> str:
    """Human lines: N, MAE, bias, ε-error, CS at a few θ, slices, interval coverage."""
    lines = [f"{results['split']}: N={results['count']}  MAE {results['mae']:.3f}  "
             f"bias {results['bias']:+.3f}  RMSE {results['rmse']:.3f}  "
             f"Pearson {results['pearson'] if results['pearson'] is None else round(results['pearson'], 4)}"]
    if results["epsilon_error"] is not None:
        lines.append(f"epsilon-error {results['epsilon_error']:.4f}")
    thetas = list(results["cs_at"].items())
    picks = [thetas[i] for i in (1, 3, 5, 10) if i < len(thetas)]
    lines.append("CS: " + "  ".join(f"@{theta} {100 * score:.1f}%" for theta, score in picks))
    for attribute, table in results.get("slices", {}).items():
        lines.append(f"by {attribute}: " + "  ".join(
            f"{group['name']} (n={group['count']}) MAE {group['mae']:.2f} bias "
            f"{group['bias']:+.2f} CS@{table['theta']:g} {100 * group['cs']:.0f}%"
            for group in table["groups"])
            + f"; largest MAE gap {table['largest_gap']['mae']:.2f} "
              f"({table['largest_gap']['worst']} vs {table['largest_gap']['best']})")
    lines.extend(gender_lines(results.get("gender_accuracy"), results.get("gender_confusion")))
    lines.extend(interval_lines(results.get("intervals")))
    if results.get("calibration"):
        fitted = results["calibration"]
        lines.append(f"calibrated: temperature {fitted['temperature']:.3f} fitted on "
                     f"{fitted['fitted_on']['split']} (NLL {fitted['nll']['before']:.3f} -> "
                     f"{fitted['nll']['after']:.3f}), stored in the model")
    return "\n".join(lines)


def gender_lines(accuracy: float | None, confusion: dict[str, Any] | None) -> list[str]:
    """'gender accuracy 91.2% (...)' and the confusion matrix, one line per true gender
    ([] without the gender head)."""
    if confusion is None:
        return []
    known = sum(map(sum, confusion["counts"]))
    shown = "n/a" if accuracy is None else f"{100 * accuracy:.1f}%"
    names = confusion["class_names"]
    return ([f"gender accuracy {shown} (n={known} known, {confusion['unknown']} unknown); "
             "rows true, columns predicted " + " / ".join(names)]
            + [f"  {name}: " + "  ".join(str(count) for count in row)
               for name, row in zip(names, confusion["counts"])])


def interval_lines(intervals: dict[str, Any] | None) -> list[str]:
    """'intervals: 90% holds 71.2% of true labels (mean width 30.1) ...' lines."""
    if not intervals:
        return []

    def line(kind: str) -> str:
        return "  ".join(f"{100 * float(mass):g}% holds {100 * cell['coverage']:.1f}% "
                         f"(width {cell['mean_width']:.1f})"
                         for mass, cell in intervals[kind].items())

    lines = [f"intervals, uncalibrated: {line('uncalibrated')}"]
    if intervals["temperature"] != 1.0:
        lines.append(f"intervals, temperature {intervals['temperature']:.3f}: "
                     f"{line('calibrated')}")
    return lines


def main(argv) -> int:
    """absl entry point: evaluate, print a summary, exit 2 with a message on bad input."""
    from absl import flags

    from tfdldl.inference import ModelLoadError
    from tfdldl.manifest import ManifestError
    from tfdldl.report import ReportError

    if len(argv) > 1:
        print(f"unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    values = flags.FLAGS
    if values.calibrate and values.split != "val":
        print(f"note: fitting the temperature on the '{values.split}' split; fit it on "
              "'val' to keep the test split unseen", file=sys.stderr)
    try:
        results = evaluate(values.model, values.data, values.split, values.out,
                           flip=not values.no_flip, batch_size=values.batch_size,
                           report=not values.no_report, calibrate_model=values.calibrate,
                           progress=values.progress)
    except (ModelLoadError, ManifestError, CalibrationError) as error:
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


def run() -> None:
    """Console-script entry point (``tfdldl-evaluate``)."""
    cli.run_main(main, define_flags, needs_tensorflow=True)


if __name__ == "__main__":
    run()

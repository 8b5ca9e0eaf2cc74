"""The numbers in ``results.json``: overall metrics, bands, slices, intervals, gender, age groups.

All NumPy, from a split's :class:`tfdldl.evaluate_data.SplitPredictions` (metric functions:
:mod:`tfdldl.metrics`, :mod:`tfdldl.age_groups`). MAE per gender is the "gender" slice
(:func:`slice_table` over the records' gender codes, named by the model's class names).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfdldl import calibration
from tfdldl.age_groups import ADIENCE_AGE_GROUPS, age_group_accuracy
from tfdldl.evaluate_data import UNKNOWN_CODE, SplitPredictions
from tfdldl.label_space import LabelSpace

# Number of equal bands the label range is cut into for a task other than age.
DEFAULT_BANDS = 8
# Width of the age task's bands, years (decades).
AGE_BAND_WIDTH = 10.0
# Names of the schema's gender codes 0 and 1 (tfdldl.example_schema).
GENDER_NAMES = ("male", "female")


def band_edges(label_space: LabelSpace, task: str = "age") -> np.ndarray:
    """Band boundaries over [minimum, maximum]: decades for the age task, else 8 equal bands;
    float64. ``task``: the data's task (tfdldl.manifest.Manifest.task)."""
    low, high = float(label_space.minimum), float(label_space.maximum)
    if task == "age":
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


def slice_theta(label_space: LabelSpace, task: str = "age") -> float:
    """The CS threshold of the slice tables: 5 years for the age task, else a twentieth of
    the range."""
    from tfdldl.metrics import AGE_CS_THETA

    if task == "age":
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
           gender_names: Sequence[str] = GENDER_NAMES, task: str = "age") -> dict[str, Any]:
    """{"gender": slice_table, <group_name or "group">: slice_table}, without empty ones;
    gender codes are named by ``gender_names`` (the model's, with the gender head)."""
    theta = slice_theta(label_space, task)
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
                    gender_names: Sequence[str] = GENDER_NAMES,
                    age_groups: Sequence[float] = ADIENCE_AGE_GROUPS,
                    task: str = "age") -> dict[str, Any]:
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
      age_groups: lower edges of the age groups, years (:mod:`tfdldl.age_groups`).
      task: what the label is (the manifest's task): the age task gets decade bands, 5-year
        slices and age groups.
    Returns:
      {"task", "count", "mae", "bias", "rmse", "pearson", "epsilon_error",
       "mean_predicted_stddev", "cs": {"thetas", "values"}, "cs_at": {θ: CS}, "bands",
       "slices": {attribute: slice_table}, "intervals": interval_results,
       "gender_accuracy": share of known-gender faces whose most probable gender is theirs
       (None without the gender head or known genders), "gender_confusion":
       :func:`gender_confusion`, "age_groups": :func:`tfdldl.age_groups.age_group_accuracy`
       (None unless the task is age)}.
    Raises:
      ValueError: bad ``age_groups`` edges.
    """
    from tfdldl import metrics

    true, value = predictions.true, predictions.value
    thetas = default_thetas(label_space)
    curve = np.asarray(metrics.cs_curve(value, true, thetas), np.float64)
    stddev = predictions.stddev[np.isfinite(predictions.stddev)]
    return {
        "task": task,
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
        "bands": band_table(true, value, band_edges(label_space, task)),
        "slices": slices(predictions, label_space, *groups, gender_names, task),
        "intervals": interval_results(predictions, label_space, temperature),
        "gender_accuracy": (None if predictions.gender_probability is None else
                            metrics.class_accuracy(predictions.gender_probability,
                                                   predictions.gender)),
        "gender_confusion": gender_confusion(predictions, gender_names),
        "age_groups": (age_group_accuracy(true, value, age_groups)
                       if task == "age" else None),
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

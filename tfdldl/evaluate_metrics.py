"""The numbers in ``results.json``: overall metrics, bands, slices, intervals, the
categorical heads' accuracy and confusion, age groups.

All NumPy, from a split's :class:`tfdldl.evaluate_data.SplitPredictions` (metric functions:
:mod:`tfdldl.metrics`, :mod:`tfdldl.age_groups`). The MAE per class of a categorical head
is its slice (:func:`slice_table` over the records' codes of its attribute, named by the
head's class names).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from tfdldl import calibration
from tfdldl.age_groups import ADIENCE_AGE_GROUPS, age_group_accuracy
from tfdldl import example_schema as schema
from tfdldl.evaluate_data import UNKNOWN_CODE, SplitPredictions
from tfdldl.label_space import LabelSpace
from tfdldl.output_names import categorical_head_of

# Number of equal bands the label range is cut into for a task other than age.
DEFAULT_BANDS = 8
# Width of the age task's bands, years (decades).
AGE_BAND_WIDTH = 10.0
# The names of the codes the schema defines (tfdldl.example_schema); the group codes are
# named by the data's manifest.
CODE_NAMES: dict[str, tuple[str, ...]] = {feature.key: feature.codes
                                          for feature in schema.FEATURES if feature.codes}


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
           class_names: Mapping[str, Sequence[str]] = {},
           class_attributes: Mapping[str, str] = {}, task: str = "age") -> dict[str, Any]:
    """{name: slice_table} over each of the records' code features, without empty ones.

    A code feature that a categorical head predicts is sliced under the head's name with its
    class names (e.g. "gender" [male, female], "race" over the group codes); the others
    under their own name ("gender" with the schema's names, the group under the manifest's
    ``group_name`` or "group", with ``group_labels``).

    Args:
      class_names, class_attributes: the model's {probability output: class names} and
        {probability output: record feature} (tfdldl.inference.Predictor).
    """
    theta = slice_theta(label_space, task)
    own = {schema.GROUP: (group_name or schema.GROUP, group_labels)}
    tables = {}
    for attribute, codes in predictions.codes.items():
        named = [(categorical_head_of(output), names) for output, names in class_names.items()
                 if class_attributes.get(output) == attribute]
        for name, names in named or [own.get(attribute, (attribute,
                                                         CODE_NAMES.get(attribute, ())))]:
            tables[name] = slice_table(predictions.true, predictions.value, codes, names, theta)
    return {name: table for name, table in tables.items() if table is not None}


def categorical_results(predictions: SplitPredictions, class_names: Mapping[str, Sequence[str]],
                        class_attributes: Mapping[str, str]) -> dict[str, Any]:
    """Per categorical head ``<name>`` of the model: "<name>_accuracy", the share of faces
    of known code whose most probable class is theirs (None when no code is known), and
    "<name>_confusion", :func:`confusion`; plus "categorical_heads": the heads' names."""
    from tfdldl import metrics

    results: dict[str, Any] = {"categorical_heads": []}
    for output, names in class_names.items():
        if output not in predictions.probabilities:
            continue
        head = categorical_head_of(output)
        probability = predictions.probabilities[output]
        codes = predictions.codes[class_attributes[output]]
        results["categorical_heads"].append(head)
        results[f"{head}_accuracy"] = metrics.class_accuracy(probability, codes)
        results[f"{head}_confusion"] = confusion(probability, codes, names)
    return results


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
                    class_names: Mapping[str, Sequence[str]] = {},
                    class_attributes: Mapping[str, str] = {},
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
      class_names: {probability output: class names in column order (= record codes)} of
        the model's categorical heads (tfdldl.inference.Predictor.class_names); they also
        name the slices of the codes each head predicts.
      class_attributes: {probability output: the record feature its head predicts}.
      age_groups: lower edges of the age groups, years (:mod:`tfdldl.age_groups`).
      task: what the label is (the manifest's task): the age task gets decade bands, 5-year
        slices and age groups.
    Returns:
      {"task", "count", "mae", "bias", "rmse", "pearson", "epsilon_error",
       "mean_predicted_stddev", "cs": {"thetas", "values"}, "cs_at": {θ: CS}, "bands",
       "slices": {name: slice_table} (:func:`slices`), "intervals": interval_results,
       "age_groups": :func:`tfdldl.age_groups.age_group_accuracy` (None unless the task is
       age)} and :func:`categorical_results` ("categorical_heads", "<name>_accuracy",
       "<name>_confusion" per categorical head).
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
        "slices": slices(predictions, label_space, *groups, class_names, class_attributes,
                         task),
        "intervals": interval_results(predictions, label_space, temperature),
        **categorical_results(predictions, class_names, class_attributes),
        "age_groups": (age_group_accuracy(true, value, age_groups)
                       if task == "age" else None),
    }


def confusion(probability: np.ndarray, codes: np.ndarray,
              names: Sequence[str]) -> dict[str, Any]:
    """A categorical head's confusion matrix over the faces of known code.

    Args:
      probability: float [N, C] predicted class probabilities.
      codes: int [N] the records' codes (-1 unknown).
      names: the C class names, column order of ``probability`` (= record codes).
    Returns:
      {"class_names": names, "counts": int [C][C] (row = true code, column = predicted, the
      most probable class), "unknown": faces of unknown code left out}.
    """
    from tfdldl import metrics

    counts = metrics.confusion_matrix(probability, codes)
    return {"class_names": list(names), "counts": counts.tolist(),
            "unknown": int(np.sum(np.asarray(codes) < 0))}


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. Pearson of constant predictions) is None."""
    value = float(value)
    return value if np.isfinite(value) else None

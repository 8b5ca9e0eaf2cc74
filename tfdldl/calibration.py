"""Calibrated uncertainty: does the predicted distribution's 90 % interval hold 90 % of ages?

A model's softmax is often over- or under-confident. Temperature scaling fixes the spread
without moving the ranking of the classes: p_T ∝ p^(1/T), i.e. softmax(logits / T). T is
fitted on the validation split by minimising the negative log-likelihood of the true
labels (:func:`fit_temperature`); T < 1 sharpens the distribution, T > 1 widens it. The
predicted value (the expectation of the *uncalibrated* distribution, what the model was
trained and evaluated on) is not changed; the standard deviation and the central
intervals are read from the calibrated distribution.

The temperature is stored in the SavedModel as ``assets/calibration.json`` (written by
``python -m tfdldl.evaluate --split val --calibrate``) and applied by ``tfdldl.predict``,
:class:`tfdldl.api.AgeEstimator` and :func:`calibrate_outputs` (for TF Serving clients,
which receive the raw ``distribution``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from tfdldl.output_names import DISTRIBUTION, STDDEV

CALIBRATION_ASSET = "calibration.json"
# Central interval masses whose coverage evaluation reports.
MASSES = (0.5, 0.8, 0.9)
# Search range of the temperature (log-spaced), wide enough for any sane softmax.
_LOG_T_RANGE = (np.log(0.05), np.log(20.0))
# Floor for probabilities before the log (float32 softmax underflows to 0).
_TINY = 1e-30


def apply_temperature(distribution: np.ndarray, temperature: float) -> np.ndarray:
    """p_T ∝ p^(1/T) row by row.

    Args:
      distribution: float [N, K] (or [K]), rows sum to 1.
      temperature: T > 0; 1 returns the input unchanged.
    Returns:
      float32 of the same shape, rows sum to 1.
    Raises:
      ValueError: T is not a positive finite number.
    """
    temperature = float(temperature)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    distribution = np.asarray(distribution, np.float64)
    if temperature == 1.0:
        return distribution.astype(np.float32)
    logits = np.log(np.maximum(distribution, _TINY)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def label_indexes(true: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """int [N]: the index of the grid value nearest to each true label."""
    grid = np.asarray(grid, np.float64)
    return np.abs(np.asarray(true, np.float64)[:, None] - grid[None, :]).argmin(axis=1)


def negative_log_likelihood(distribution: np.ndarray, true: np.ndarray, grid: np.ndarray,
                            temperature: float = 1.0) -> float:
    """Mean -log p_T(bin of the true label), nats. distribution [N, K], true [N]."""
    scaled = apply_temperature(distribution, temperature).astype(np.float64)
    picked = scaled[np.arange(len(scaled)), label_indexes(true, grid)]
    return float(-np.mean(np.log(np.maximum(picked, _TINY))))


def fit_temperature(distribution: np.ndarray, true: np.ndarray, grid: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the validation NLL (log-spaced grid, then refined).

    Args:
      distribution: float [N, K] predicted distributions (uncalibrated).
      true: float [N] labels, label units.
      grid: float [K] label values.
    Raises:
      ValueError: no samples.
    """
    if len(true) == 0:
        raise ValueError("cannot fit a temperature on an empty split")
    low, high = _LOG_T_RANGE
    best = 0.0
    for points in (81, 41, 41):  # coarse grid, then twice around the best point
        candidates = np.linspace(low, high, points)
        losses = [negative_log_likelihood(distribution, true, grid, np.exp(c))
                  for c in candidates]
        index = int(np.argmin(losses))
        best = float(candidates[index])
        step = candidates[1] - candidates[0]
        low, high = best - step, best + step
    return float(np.exp(best))


def interval_coverage(distribution: np.ndarray, true: np.ndarray, grid: np.ndarray,
                      masses: Sequence[float] = MASSES) -> dict[str, dict[str, float]]:
    """How often the central intervals hold the true label, and how wide they are.

    Args:
      distribution: float [N, K].
      true: float [N] labels.
      grid: float [K].
      masses: interval masses, each in (0, 1).
    Returns:
      {"0.9": {"coverage": share of labels inside [low, high] (0..1), "mean_width": mean
      high - low (label units)}, ...}, keyed by f"{mass:g}".
    """
    from tfdldl.inference import central_interval

    true = np.asarray(true, np.float64)
    report = {}
    for mass in masses:
        low, high = central_interval(distribution, grid, mass)
        # Labels between grid points count as inside when their nearest grid value is.
        nearest = np.asarray(grid, np.float64)[label_indexes(true, grid)]
        inside = (nearest >= low) & (nearest <= high)
        report[f"{mass:g}"] = {"coverage": float(inside.mean()),
                               "mean_width": float(np.mean(high - low))}
    return report


def calibrate_outputs(outputs: Mapping[str, np.ndarray], temperature: float,
                      grid: np.ndarray) -> dict[str, np.ndarray]:
    """A model's outputs with "distribution" and "stddev" calibrated; "value" unchanged.

    Args:
      outputs: {"value" [N], "stddev" [N], "distribution" [N, K]} (a model without a
        distribution is returned as it is).
      temperature: the model's T (:func:`read_temperature`).
      grid: float [K] label values.
    """
    if DISTRIBUTION not in outputs or float(temperature) == 1.0:
        return dict(outputs)
    from tfdldl.inference import distribution_stddev

    distribution = apply_temperature(outputs[DISTRIBUTION], temperature)
    return {**outputs, DISTRIBUTION: distribution,
            STDDEV: distribution_stddev(distribution, grid)}


def calibration_path(model_dir: str | os.PathLike) -> str:
    """``<SavedModel>/assets/calibration.json``."""
    return os.path.join(os.fspath(model_dir), "assets", CALIBRATION_ASSET)


def read_temperature(model_dir: str | os.PathLike) -> float:
    """The stored temperature of a SavedModel folder; 1.0 (uncalibrated) when none is stored.

    Raises:
      ValueError: the file exists but holds no positive "temperature".
    """
    path = calibration_path(model_dir)
    if not os.path.isfile(path):
        return 1.0
    with open(path, encoding="utf-8") as handle:
        try:
            temperature = float(json.load(handle)["temperature"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} holds no valid temperature ({error!r}); rerun "
                             "`python -m tfdldl.evaluate --split val --calibrate`") from None
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{path}: temperature {temperature} is not positive; rerun the "
                         "calibration")
    return temperature


def write_calibration(model_dir: str | os.PathLike, record: Mapping[str, Any]) -> str:
    """Write ``record`` (with its "temperature") as the model's calibration asset."""
    from tfdldl.jsonio import write_json

    path = calibration_path(model_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return write_json(path, dict(record))

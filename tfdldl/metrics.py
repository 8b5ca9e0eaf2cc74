"""Evaluation metrics of the paper: MAE, ε-error, CS@θ (age); MAE, RMSE, Pearson (beauty).

Two forms of each:

- NumPy functions (float64) for evaluation reports: :func:`mae`, :func:`epsilon_error`,
  :func:`cumulative_score`, :func:`cs_curve`, :func:`rmse`, :func:`pearson`.
- Keras metrics on the "value" output for training logs (``keras.ops`` only). Their state
  is a set of running sums (``add_weight``), which distribution strategies add up across
  replicas, so they are exact under MirroredStrategy. :func:`build_metrics` picks the
  set for a task.
"""

from __future__ import annotations

from typing import Literal, Sequence

import keras
import numpy as np
from keras import ops

from tfdldl.label_space import MIN_SIGMA
from tfdldl.output_names import VALUE

PACKAGE = "tfdldl"
TASKS = ("age", "attractiveness")
# The CS threshold reported during training for age (years).
AGE_CS_THETA = 5.0


# ----------------------------------------------------------------------------- NumPy


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """float64 1-D arrays of equal, non-zero length, or a ValueError saying what differs."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"predictions ({p.size}) and true labels ({t.size}) differ in length")
    if p.size == 0:
        raise ValueError("no predictions to evaluate (empty arrays)")
    return p, t


def mae(pred, true) -> float:
    """Mean absolute error mean|ŷ - y|, label units. pred, true: [N]."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t)))


def rmse(pred, true) -> float:
    """Root mean squared error sqrt(mean (ŷ - y)²), label units. pred, true: [N]."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def pearson(pred, true) -> float:
    """Pearson correlation of predictions and labels, in [-1, 1]. pred, true: [N], N >= 2.

    Returns NaN when either side is constant (the correlation is undefined).
    """
    p, t = _pair(pred, true)
    if p.size < 2:
        raise ValueError("the Pearson correlation needs at least 2 samples")
    dp, dt = p - p.mean(), t - t.mean()
    denominator = np.sqrt(np.sum(dp ** 2) * np.sum(dt ** 2))
    return float(np.sum(dp * dt) / denominator) if denominator > 0 else float("nan")


def cumulative_score(pred, true, theta: float) -> float:
    """CS@θ: the share of samples with |ŷ - y| <= θ, in [0, 1]. pred, true: [N]."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t) <= theta))


def cs_curve(pred, true, thetas: Sequence[float]) -> np.ndarray:
    """CS@θ for each θ in ``thetas``: float64 [len(thetas)], non-decreasing in θ."""
    p, t = _pair(pred, true)
    errors = np.abs(p - t)
    return np.array([np.mean(errors <= theta) for theta in thetas], dtype=np.float64)


def _known_classes(probabilities, codes) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, true code) of the faces whose code is known (>= 0), int64 [M] each.

    Raises:
      ValueError: probabilities not [N, C] or codes not [N].
    """
    codes = np.asarray(codes).reshape(-1)
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or len(probabilities) != len(codes):
        raise ValueError(f"probabilities {probabilities.shape} and codes ({len(codes)}) do not "
                         "pair up: expected [N, C] and [N]")
    known = codes >= 0
    return (np.argmax(probabilities[known], axis=-1).astype(np.int64),
            codes[known].astype(np.int64))


def class_accuracy(probabilities, codes) -> float | None:
    """Share of known codes (>= 0) whose most probable class is the code; None when none
    is known. probabilities: float [N, C]; codes: int [N], negative = unknown."""
    predicted, true = _known_classes(probabilities, codes)
    return float(np.mean(predicted == true)) if len(true) else None


def confusion_matrix(probabilities, codes) -> np.ndarray:
    """Counts of (true code, most probable class) over the known codes.

    Args:
      probabilities: float [N, C], one row of class probabilities per face.
      codes: int [N], the true class codes 0..C-1; negative = unknown (left out).
    Returns:
      int64 [C, C]: row = true code, column = predicted class; sums to the known count.
    Raises:
      ValueError: shapes that do not pair up, or a code >= C.
    """
    predicted, true = _known_classes(probabilities, codes)
    classes = np.asarray(probabilities).shape[1]
    if len(true) and true.max() >= classes:
        raise ValueError(f"code {int(true.max())} has no column among the {classes} classes")
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (true, predicted), 1)
    return counts


def epsilon_error(pred, mean, sigma) -> float:
    """ChaLearn's ε-error mean(1 - exp(-(ŷ - μ)² / 2σ²)), in [0, 1].

    Args:
      pred: ŷ [N], label units.
      mean: μ [N], the annotators' mean label.
      sigma: σ [N] (or scalar), the annotators' std, >= 0; σ below 1e-3 counts as 1e-3
        (σ = 0 occurs in ChaLearn).
    """
    p, mu = _pair(pred, mean)
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    if s.size not in (1, p.size):
        raise ValueError(f"sigma has {s.size} values for {p.size} predictions; give one per "
                         "sample or a single scalar")
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("epsilon_error needs finite sigma >= 0 for every sample (the "
                         "annotators' std); this data set has none or invalid ones")
    s = np.maximum(s, MIN_SIGMA)
    return float(np.mean(1.0 - np.exp(-((p - mu) ** 2) / (2.0 * s ** 2))))


# ----------------------------------------------------------------------------- Keras


class _RunningSums(keras.metrics.Metric):
    """A metric whose state is named float32 sums over all samples seen (weighted).

    Subclasses list ``SUMS`` and implement ``_terms(y_true, y_pred) -> {sum name: [N]}``
    and ``result``; sample weights multiply every term (and the count ``n``). The sums are
    kept in ``SUM_DTYPE``.
    """

    SUMS: tuple[str, ...] = ()
    SUM_DTYPE = "float32"

    def __init__(self, name, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.sums = {key: self.add_weight(name=key, shape=(), initializer="zeros",
                                          dtype=self.SUM_DTYPE)
                     for key in ("n",) + self.SUMS}

    def update_state(self, y_true, y_pred, sample_weight=None):
        terms = self._terms(y_true, y_pred)
        n = ops.shape(ops.convert_to_tensor(next(iter(terms.values()))))[0]
        weight = (ops.ones((n,), self.SUM_DTYPE) if sample_weight is None
                  else ops.reshape(ops.cast(sample_weight, self.SUM_DTYPE), (-1,)))
        self.sums["n"].assign_add(ops.sum(weight))
        for key, values in terms.items():
            self.sums[key].assign_add(ops.sum(weight * ops.cast(values, self.SUM_DTYPE)))

    def reset_state(self):
        for variable in self.sums.values():
            variable.assign(0.0)

    def _mean(self, key):
        return ops.divide_no_nan(self.sums[key], self.sums["n"])


def _flat(y):
    return ops.reshape(ops.cast(y, "float32"), (-1,))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanAbsoluteError(_RunningSums):
    """mean|ŷ - y| over all samples seen; y_true, y_pred [N] label units."""

    SUMS = ("abs_error",)

    def __init__(self, name="mae", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, y_true, y_pred):
        return {"abs_error": ops.abs(_flat(y_pred) - _flat(y_true))}

    def result(self):
        return self._mean("abs_error")


@keras.saving.register_keras_serializable(package=PACKAGE)
class RootMeanSquaredError(_RunningSums):
    """sqrt(mean (ŷ - y)²) over all samples seen; y_true, y_pred [N] label units."""

    SUMS = ("squared_error",)

    def __init__(self, name="rmse", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, y_true, y_pred):
        return {"squared_error": ops.square(_flat(y_pred) - _flat(y_true))}

    def result(self):
        return ops.sqrt(self._mean("squared_error"))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CumulativeScore(_RunningSums):
    """CS@θ: the share of samples with |ŷ - y| <= θ; y_true, y_pred [N] label units."""

    SUMS = ("within",)

    def __init__(self, theta: float = AGE_CS_THETA, name=None, dtype=None):
        super().__init__(name=name or f"cs{float(theta):g}", dtype=dtype)
        self.theta = float(theta)

    def _terms(self, y_true, y_pred):
        error = ops.abs(_flat(y_pred) - _flat(y_true))
        return {"within": ops.cast(ops.less_equal(error, self.theta), "float32")}

    def result(self):
        return self._mean("within")

    def get_config(self):
        return {**super().get_config(), "theta": self.theta}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PearsonCorrelation(_RunningSums):
    """Pearson correlation of ŷ and y over all samples seen; y_true, y_pred [N].

    Streams Σx, Σy, Σx², Σy², Σxy in float64: in float32 the moments cancel badly when
    the predictions barely vary (early training). 0 while undefined. (On JAX without
    ``jax_enable_x64`` the sums fall back to float32.)
    """

    SUMS = ("x", "y", "xx", "yy", "xy")
    SUM_DTYPE = "float64"

    def __init__(self, name="pearson", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, y_true, y_pred):
        x = ops.cast(_flat(y_pred), self.SUM_DTYPE)
        y = ops.cast(_flat(y_true), self.SUM_DTYPE)
        return {"x": x, "y": y, "xx": x * x, "yy": y * y, "xy": x * y}

    def result(self):
        mx, my = self._mean("x"), self._mean("y")
        covariance = self._mean("xy") - mx * my
        var_x = ops.maximum(self._mean("xx") - mx * mx, 0.0)
        var_y = ops.maximum(self._mean("yy") - my * my, 0.0)
        return ops.cast(ops.divide_no_nan(covariance, ops.sqrt(var_x * var_y)), "float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class EpsilonError(_RunningSums):
    """ChaLearn's ε-error mean(1 - exp(-(ŷ - μ)² / 2σ²)) over all samples seen.

    y_true: float [N, 2], columns (μ, σ) (σ clamped at 1e-3); y_pred: ŷ [N]. For
    evaluation loops that have σ; the training targets' "value" carries no σ.
    """

    SUMS = ("epsilon",)

    def __init__(self, name="epsilon_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, y_true, y_pred):
        target = ops.reshape(ops.cast(y_true, "float32"), (-1, 2))
        mean, sigma = target[:, 0], ops.maximum(target[:, 1], MIN_SIGMA)
        error = _flat(y_pred) - mean
        return {"epsilon": 1.0 - ops.exp(-ops.square(error) / (2.0 * ops.square(sigma)))}

    def result(self):
        return self._mean("epsilon")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedAccuracy(_RunningSums):
    """Share of samples whose most probable class is their class code, over known codes.

    y_true: [N] class codes (negative = unknown: not counted). y_pred: float [N, C]
    probabilities. Result: a share in [0, 1] (0 before any known code).
    """

    SUMS = ("correct", "known")

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, y_true, y_pred):
        codes = _flat(y_true)
        known = ops.cast(ops.greater_equal(codes, 0.0), "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "float32"), codes),
                       "float32")
        return {"correct": hit * known, "known": known}

    def result(self):
        return ops.divide_no_nan(self.sums["correct"], self.sums["known"])


def build_metrics(task: Literal["age", "attractiveness"],
                  categorical: Sequence[str] = ()) -> dict[str, list]:
    """Metrics for ``model.compile(metrics=...)``, keyed by output ("value", and each of
    ``categorical``, the categorical heads' ``<name>_probability`` outputs).

    age: MAE and CS@5; attractiveness: MAE, RMSE and Pearson correlation (the paper's);
    a categorical head: the accuracy over faces of known code. Keras logs them as
    ``value_mae``, ``value_cs5``, ``value_rmse``, ``value_pearson``,
    ``<name>_probability_accuracy``.
    """
    if task == "age":
        chosen = {VALUE: [MeanAbsoluteError(), CumulativeScore(AGE_CS_THETA)]}
    elif task == "attractiveness":
        chosen = {VALUE: [MeanAbsoluteError(), RootMeanSquaredError(), PearsonCorrelation()]}
    else:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    for output in categorical:
        chosen[output] = [MaskedAccuracy()]
    return chosen

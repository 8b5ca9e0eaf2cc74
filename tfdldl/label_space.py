"""Label spaces: the discrete grid l_0..l_{K-1} and the encodings defined on it.

A label space is the single source of truth for what a model predicts. It is written
into every TFRecord manifest and every exported model, and compared with ``==`` before
a model touches data.

Pure NumPy on purpose: data preparation, the TF-free reader and every Keras backend use
it without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

# Below this σ the Gaussian is replaced by its limit, a one-hot at the nearest grid
# point (σ = 0 occurs in ChaLearn's annotator std).
MIN_SIGMA = 1e-3


class LabelOutOfRangeError(ValueError):
    """A label lies outside the label space's [min, max] interval."""


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """An evenly spaced label grid ``minimum, minimum + step, ..., maximum``.

    Attributes:
      minimum: first grid point, in label units (years, rating points).
      maximum: last grid point; ``(maximum - minimum) / step`` must be a whole number.
      step: grid spacing Δl, > 0.
      name: what the label is ("age", "attractiveness"); informative only.
    """

    minimum: float
    maximum: float
    step: float
    name: str = "label"

    def __post_init__(self):
        if not self.step > 0:
            raise ValueError(f"label space step must be > 0, got {self.step}")
        if not self.maximum > self.minimum:
            raise ValueError(
                f"label space maximum ({self.maximum}) must exceed minimum ({self.minimum})"
            )
        intervals = (self.maximum - self.minimum) / self.step
        if abs(intervals - round(intervals)) > 1e-6:
            raise ValueError(
                f"label space [{self.minimum}, {self.maximum}] is not a whole number of "
                f"steps of {self.step}; adjust maximum or step"
            )

    @property
    def num_classes(self) -> int:
        """K, the number of grid points."""
        return int(round((self.maximum - self.minimum) / self.step)) + 1

    @property
    def grid(self) -> np.ndarray:
        """The grid points l_k, float32[K], in label units."""
        return (self.minimum + self.step * np.arange(self.num_classes)).astype(np.float32)

    def describe(self) -> str:
        """A one-line human description, e.g. ``age [0, 100] step 1 (K=101)``."""
        return (
            f"{self.name} [{self.minimum:g}, {self.maximum:g}] step {self.step:g} "
            f"(K={self.num_classes})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready dict; inverse of :meth:`from_dict`."""
        return {
            "name": self.name,
            "minimum": float(self.minimum),
            "maximum": float(self.maximum),
            "step": float(self.step),
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelSpace":
        """Build from :meth:`to_dict` output (``num_classes`` is checked, not trusted)."""
        space = cls(
            minimum=float(data["minimum"]),
            maximum=float(data["maximum"]),
            step=float(data["step"]),
            name=str(data.get("name", "label")),
        )
        if "num_classes" in data and int(data["num_classes"]) != space.num_classes:
            raise ValueError(
                f"label space {space.describe()} does not have num_classes="
                f"{data['num_classes']} as recorded"
            )
        return space

    def same_grid(self, other: "LabelSpace") -> bool:
        """True when both spaces have the same grid (names may differ)."""
        return self.num_classes == other.num_classes and np.allclose(
            self.grid, other.grid, atol=1e-6
        )

    def contains(self, labels) -> np.ndarray:
        """Boolean mask, shape of ``labels``: which labels lie within [min, max]."""
        values = np.asarray(labels, dtype=np.float64)
        tolerance = 1e-6 * self.step
        return (
            np.isfinite(values)
            & (values >= self.minimum - tolerance)
            & (values <= self.maximum + tolerance)
        )

    def check(self, labels, where: str = "") -> np.ndarray:
        """Return ``labels`` as float32 or raise naming the first value out of range.

        Args:
          labels: scalar or array of labels, in label units.
          where: context for the message (a file name, a split).
        Raises:
          LabelOutOfRangeError: if any label is NaN or outside [min, max].
        """
        values = np.asarray(labels, dtype=np.float32)
        inside = self.contains(values)
        if not np.all(inside):
            bad = values.reshape(-1)[~inside.reshape(-1)][0]
            context = f" in {where}" if where else ""
            raise LabelOutOfRangeError(
                f"label {bad:g}{context} is outside the label space {self.describe()}; "
                "clip or drop such labels, or widen the label space in the config"
            )
        return values

    def nearest_index(self, labels) -> np.ndarray:
        """Index of the nearest grid point, int64 with the shape of ``labels``."""
        values = np.asarray(labels, dtype=np.float64)
        index = np.rint((values - self.minimum) / self.step).astype(np.int64)
        return np.clip(index, 0, self.num_classes - 1)

    def gaussian(self, labels, sigma) -> np.ndarray:
        """Gaussian label distributions p_k ∝ exp(-(l_k - y)² / 2σ²), normalised over the grid.

        Args:
          labels: y, shape [N] (or scalar), in label units; must lie in the space.
          sigma: σ, scalar or shape [N], in label units. σ below ``MIN_SIGMA`` gives the
            σ → 0 limit: all mass on the nearest grid point (no NaN).
        Returns:
          float32 [N, K] (or [K] for a scalar label); each row sums to 1.
        """
        scalar = np.ndim(labels) == 0
        y = np.atleast_1d(self.check(labels)).astype(np.float64)
        s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), y.shape)
        if np.any(~np.isfinite(s)) or np.any(s < 0):
            raise ValueError(f"sigma must be finite and >= 0, got {np.asarray(sigma)}")
        s = np.maximum(s, MIN_SIGMA)
        grid = self.grid.astype(np.float64)
        log_p = -((grid[None, :] - y[:, None]) ** 2) / (2.0 * s[:, None] ** 2)
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        p /= p.sum(axis=1, keepdims=True)
        p = p.astype(np.float32)
        return p[0] if scalar else p

    def one_hot(self, labels) -> np.ndarray:
        """One-hot at the nearest grid point, float32 [N, K] (DEX's target)."""
        index = self.nearest_index(self.check(labels))
        return np.eye(self.num_classes, dtype=np.float32)[index]

    def ranking(self, labels) -> np.ndarray:
        """Ranking encoding: K-1 binary targets [y > l_k] for k = 0..K-2, float32 [N, K-1].

        The prediction from K-1 binary classifiers is ``minimum + step * count(p > 0.5)``.
        """
        y = np.asarray(self.check(labels), dtype=np.float64)
        thresholds = self.grid[:-1].astype(np.float64) + 0.5 * self.step
        return (y[..., None] > thresholds).astype(np.float32)

    def cdf_matrix(self) -> np.ndarray:
        """T, the K x K lower-triangular ones matrix: (T p)_k = Σ_{j≤k} p_j (the CDF)."""
        return np.tril(np.ones((self.num_classes, self.num_classes), dtype=np.float32))


AGE = LabelSpace(0.0, 100.0, 1.0, name="age")
SCUT_FBP5500 = LabelSpace(1.0, 5.0, 0.1, name="attractiveness")
CFD = LabelSpace(1.0, 7.0, 0.1, name="attractiveness")


def ranking_from_distribution(distribution) -> np.ndarray:
    """The paper's unification: p_rank ≈ 1 - T·p_ld, dropping the last (always 0) entry.

    Args:
      distribution: p_ld, float [N, K] (rows sum to 1).
    Returns:
      float32 [N, K-1]: P(y > l_k) for k = 0..K-2.
    """
    p = np.asarray(distribution, dtype=np.float64)
    cdf = np.cumsum(p, axis=-1)
    return (1.0 - cdf[..., :-1]).astype(np.float32)


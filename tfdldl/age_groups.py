"""Age-group accuracy: how often the predicted age falls in the true age's group.

The attentional multi-task paper (Abdolrashidi & Minaei, 2020) reports age as accuracy over
age groups rather than as an MAE. Groups here are given by their lower edges in years;
group i holds the ages [edges[i], edges[i+1]) and the last group every age from its edge
up. A prediction below the first edge counts in the first group.

The default, :data:`ADIENCE_AGE_GROUPS`, is the eight Adience groups (Levi & Hassner,
2015: 0-2, 4-6, 8-13, 15-20, 25-32, 38-43, 48-53, 60+), the standard age-group benchmark,
made contiguous: Adience leaves gaps between its groups (3, 7, 14, 21-24, ...), which a
continuous age must fall into, so each group here extends up to the next group's first
age (0-3, 4-7, 8-14, 15-24, 25-37, 38-47, 48-59, 60+). Reported with Adience's usual pair:
exact accuracy and one-off accuracy (the predicted group is the true one or a neighbour).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# Lower edges of the Adience age groups, made contiguous (see the module docstring).
ADIENCE_AGE_GROUPS = (0.0, 4.0, 8.0, 15.0, 25.0, 38.0, 48.0, 60.0)


def parse_age_groups(text: str) -> tuple[float, ...]:
    """'0,4,8,15' -> (0.0, 4.0, 8.0, 15.0): lower edges of the age groups, years.

    Raises:
      ValueError: a value that is not a number, fewer than two edges, or edges that do not
        increase; the message names the value and shows the expected form.
    """
    edges = []
    for part in text.split(","):
        try:
            edges.append(float(part))
        except ValueError:
            raise ValueError(f"age group edge {part.strip()!r} in {text!r} is not a number; "
                             "give the groups' lower ages in years, comma-separated, e.g. "
                             "0,4,8,15,25,38,48,60") from None
    check_edges(edges)
    return tuple(edges)


def check_edges(edges: Sequence[float]) -> None:
    """Raise ValueError unless ``edges`` are at least two finite, increasing ages."""
    values = np.asarray(edges, np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"age groups need at least two lower edges, got {list(edges)}")
    if not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise ValueError(f"age group edges must be finite and increasing, got {list(edges)} "
                         "(e.g. 0,4,8,15,25,38,48,60)")


def group_index(ages: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """int64 [N]: the group of each age (0 for ages below the first edge)."""
    index = np.searchsorted(np.asarray(edges, np.float64), np.asarray(ages, np.float64),
                            side="right") - 1
    return np.maximum(index, 0)


def group_names(edges: Sequence[float]) -> list[str]:
    """'0-3', '4-7', ..., '60+' for integer edges; '[a, b)' style 'a-b' otherwise."""
    names = []
    for low, high in zip(edges[:-1], edges[1:]):
        whole = float(low).is_integer() and float(high).is_integer()
        names.append(f"{low:g}-{high - 1:g}" if whole else f"{low:g}-<{high:g}")
    names.append(f"{edges[-1]:g}+")
    return names


def age_group_accuracy(true: np.ndarray, predicted: np.ndarray,
                       edges: Sequence[float] = ADIENCE_AGE_GROUPS) -> dict[str, Any] | None:
    """Exact and one-off age-group accuracy, overall and per true group.

    Args:
      true, predicted: float [N], years.
      edges: lower edges of the groups, increasing (:data:`ADIENCE_AGE_GROUPS`).
    Returns:
      None for N = 0, else {"edges": [float], "accuracy": share of faces whose predicted
      group is the true one, "one_off_accuracy": share within one group, "groups":
      [{"name", "low", "high" (None for the last), "count", "accuracy" (None when
      empty)}]} — a group's accuracy is its recall (share of its faces predicted in it).
    Raises:
      ValueError: bad edges (:func:`check_edges`) or true and predicted of unequal length.
    """
    check_edges(edges)
    true, predicted = np.asarray(true, np.float64), np.asarray(predicted, np.float64)
    if true.shape != predicted.shape:
        raise ValueError(f"true ({true.shape}) and predicted ({predicted.shape}) ages differ "
                         "in shape")
    if true.size == 0:
        return None
    true_group, predicted_group = group_index(true, edges), group_index(predicted, edges)
    hit = true_group == predicted_group
    groups = []
    for i, name in enumerate(group_names(edges)):
        inside = true_group == i
        count = int(inside.sum())
        groups.append({"name": name, "low": float(edges[i]),
                       "high": float(edges[i + 1]) if i + 1 < len(edges) else None,
                       "count": count,
                       "accuracy": float(hit[inside].mean()) if count else None})
    return {"edges": [float(edge) for edge in edges], "accuracy": float(hit.mean()),
            "one_off_accuracy": float(np.mean(np.abs(true_group - predicted_group) <= 1)),
            "groups": groups}

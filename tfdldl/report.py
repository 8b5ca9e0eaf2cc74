"""The evaluation report a person looks at: PNG plots and one self-contained HTML page.

Plots (all from NumPy arrays, so they can be tested without a model):
  * predicted vs true scatter, with the identity line;
  * mean absolute error and bias per label band (age decade), with sample counts;
  * the cumulative score curve CS(θ);
  * MAE, bias and counts per group (gender, race...) when the data has groups;
  * a grid of the best and the worst predicted faces, each above its predicted
    distribution with the true and predicted values marked;
  * for a model with attention, the same faces with its attention map overlaid.
``report.html`` (:mod:`tfdldl.report_html`) embeds every PNG and the metric tables
(including gender, age groups and the coverage of the predicted intervals).

matplotlib is an optional extra (``pip install tfdldl[report]``); it is imported on first
use and its absence is a :class:`ReportError` saying how to install it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import numpy as np

from tfdldl import safe_io
from tfdldl.label_space import LabelSpace
from tfdldl.report_html import HTML_NAME, write_html

SCATTER_PNG = "scatter.png"
BANDS_PNG = "error_by_band.png"
CS_PNG = "cs_curve.png"
FACES_PNG = "best_worst_faces.png"
SLICES_PNG = "error_by_group.png"
ATTENTION_PNG = "attention_maps.png"
# The report's sentence for a model without attention (instead of an attention figure).
NO_ATTENTION = ("This model has no attention map (it was built without model.attention), "
                "so none is drawn.")


class ReportError(RuntimeError):
    """The report cannot be drawn (matplotlib missing); the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class FaceSample:
    """One evaluated face for the best/worst grid.

    Attributes:
      image: uint8 [S, S, 3] RGB aligned face.
      true: the label, label units.
      predicted: the predicted value, label units.
      distribution: float [K] predicted distribution (None for models without one).
      attention: uint8 [S, S, 3] RGB, the face with the model's attention map overlaid
        (tfdldl.attention_maps.overlay); None for a model without attention.
    """

    image: np.ndarray
    true: float
    predicted: float
    distribution: np.ndarray | None
    attention: np.ndarray | None = None


def _pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or a ReportError."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("the report needs matplotlib, which is not installed; install it "
                          "with `pip install 'tfdldl[report]'` (or `pip install matplotlib`)"
                          ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def units(task: str, label_space: LabelSpace) -> str:
    """The unit of the label for axis titles: years for the age task, else the label
    space's units. ``task``: the data's task (tfdldl.manifest.Manifest.task, the results'
    "task"); the label space's name does not decide it."""
    return "years" if task == "age" else f"{label_space.name} units"


def _save(figure, path: str) -> str:
    with safe_io.atomic_path(path, suffix=".png") as temporary:  # not through a link
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_scatter(true: np.ndarray, predicted: np.ndarray, label_space: LabelSpace,
                 path: str) -> str:
    """Predicted vs true values, one dot per face, with the identity line.

    Args:
      true, predicted: float [N], label units.
      label_space: gives the axis range and the quantity's name.
      path: PNG to write.
    Returns:
      ``path``.
    """
    plt = _pyplot()
    true = np.asarray(true, np.float64)
    predicted = np.asarray(predicted, np.float64)
    figure, axes = plt.subplots(figsize=(5.2, 5.0))
    alpha = float(np.clip(300.0 / max(len(true), 1), 0.15, 0.8))
    axes.scatter(true, predicted, s=9, alpha=alpha, color="tab:blue", edgecolors="none")
    low, high = label_space.minimum, label_space.maximum
    axes.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    name = label_space.name
    axes.set_xlabel(f"true {name}")
    axes.set_ylabel(f"predicted {name}")
    mae = float(np.mean(np.abs(predicted - true))) if len(true) else float("nan")
    axes.set_title(f"Predicted vs true {name} (N={len(true)}, MAE {mae:.2f})")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return _save(figure, path)


def plot_error_by_band(bands: Sequence[Mapping[str, Any]], label_space: LabelSpace,
                       path: str, *, task: str) -> str:
    """Bars of mean absolute error per label band, bias as dots, counts above the bars.

    Args:
      bands: dicts with "low", "high", "count", "mae", "bias" (``tfdldl.evaluate.band_table``);
        empty bands have mae/bias None.
      label_space: names the quantity.
      path: PNG to write.
      task: the data's task; gives the error's unit (:func:`units`).
    Returns:
      ``path``.
    """
    plt = _pyplot()
    labels = [f"{band['low']:g}–{band['high']:g}" for band in bands]
    mae = [np.nan if band["mae"] is None else band["mae"] for band in bands]
    bias = [np.nan if band["bias"] is None else band["bias"] for band in bands]
    positions = np.arange(len(bands))
    figure, axes = plt.subplots(figsize=(max(5.0, 0.7 * len(bands) + 2), 4.0))
    bars = axes.bar(positions, mae, color="tab:orange", label="MAE")
    axes.plot(positions, bias, "o", color="tab:purple", label="bias (mean predicted − true)")
    axes.axhline(0, color="black", linewidth=0.8)
    for bar, band in zip(bars, bands):
        height = bar.get_height()
        axes.annotate(f"n={band['count']}", (bar.get_x() + bar.get_width() / 2,
                                             0 if np.isnan(height) else height),
                      ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                      textcoords="offset points")
    axes.set_xticks(positions, labels, rotation=45 if len(bands) > 8 else 0)
    axes.set_xlabel(f"true {label_space.name} band")
    axes.set_ylabel(f"error ({units(task, label_space)})")
    axes.set_title(f"Error by {label_space.name} band")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="best")
    return _save(figure, path)


def plot_cs_curve(thetas: Sequence[float], scores: Sequence[float], label_space: LabelSpace,
                  path: str, *, task: str) -> str:
    """The cumulative score CS(θ): share of faces with |error| ≤ θ, against θ.

    Args:
      thetas: float [T], error thresholds, label units.
      scores: float [T], CS values in 0..1.
      label_space: names the quantity.
      path: PNG to write.
      task: the data's task; gives θ's unit (:func:`units`).
    Returns:
      ``path``.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 4.0))
    axes.plot(thetas, 100.0 * np.asarray(scores, np.float64), marker="o", markersize=3,
              color="tab:green")
    axes.set_xlabel(f"error threshold θ ({units(task, label_space)})")
    axes.set_ylabel("cumulative score CS(θ), %")
    axes.set_ylim(0, 100)
    axes.set_xlim(thetas[0], thetas[-1])
    axes.set_title("Cumulative score")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_slices(slices: Mapping[str, Mapping[str, Any]], label_space: LabelSpace,
                path: str, *, task: str) -> str:
    """MAE bars and bias dots per group, one panel per attribute (gender, race, ...).

    Args:
      slices: attribute -> ``tfdldl.evaluate.slice_table`` dict ("groups" with "name",
        "count", "mae", "bias"; "largest_gap").
      label_space: names the quantity.
      path: PNG to write.
      task: the data's task; gives the error's unit (:func:`units`).
    Returns:
      ``path``.
    """
    plt = _pyplot()
    figure, panels = plt.subplots(1, len(slices), figsize=(4.2 * len(slices) + 0.8, 4.0),
                                  squeeze=False)
    for axes, (attribute, table) in zip(panels[0], slices.items()):
        groups = table["groups"]
        positions = np.arange(len(groups))
        bars = axes.bar(positions, [group["mae"] for group in groups], color="tab:orange",
                        label="MAE")
        axes.plot(positions, [group["bias"] for group in groups], "o", color="tab:purple",
                  label="bias")
        axes.axhline(0, color="black", linewidth=0.8)
        for bar, group in zip(bars, groups):
            axes.annotate(f"n={group['count']}", (bar.get_x() + bar.get_width() / 2,
                                                 bar.get_height()),
                          ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                          textcoords="offset points")
        axes.set_xticks(positions, [group["name"] for group in groups],
                        rotation=30 if len(groups) > 3 else 0)
        gap = table["largest_gap"]
        axes.set_title(f"by {attribute}: largest MAE gap {gap['mae']:.2f}", fontsize=10)
        axes.set_ylabel(f"error ({units(task, label_space)})")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(loc="best", fontsize=8)
    return _save(figure, path)


def plot_face_grid(groups: Sequence[tuple[str, Sequence[FaceSample]]], label_space: LabelSpace,
                   path: str) -> str:
    """Faces with their predicted distributions, one row pair (faces, distributions) per group.

    Args:
      groups: (title, faces) pairs, e.g. ("best predicted", [...]), ("worst predicted", [...]).
      label_space: the grid the distributions live on.
      path: PNG to write.
    Returns:
      ``path``.
    """
    plt = _pyplot()
    columns = max(1, max(len(faces) for _, faces in groups))
    figure = plt.figure(figsize=(1.9 * columns, 3.0 * len(groups) + 0.4))
    outer = figure.add_gridspec(len(groups), 1, hspace=0.35)
    grid = label_space.grid
    for g, (title, faces) in enumerate(groups):
        inner = outer[g].subgridspec(2, columns, height_ratios=[1.0, 0.4], hspace=0.05,
                                     wspace=0.15)
        for c, face in enumerate(faces):
            image_axes = figure.add_subplot(inner[0, c])
            image_axes.imshow(face.image)
            image_axes.set_xticks([])
            image_axes.set_yticks([])
            image_axes.set_title(_face_title(face), fontsize=8)
            if c == 0:
                image_axes.set_ylabel(title, fontsize=10)
            dist_axes = figure.add_subplot(inner[1, c])
            if face.distribution is not None:
                dist_axes.fill_between(grid, face.distribution, step="mid", color="tab:blue",
                                       alpha=0.6)
            dist_axes.axvline(face.true, color="tab:green", linewidth=1.2)
            dist_axes.axvline(face.predicted, color="tab:red", linewidth=1.2, linestyle="--")
            dist_axes.set_xlim(label_space.minimum, label_space.maximum)
            dist_axes.set_yticks([])
            dist_axes.tick_params(labelsize=7)
    figure.suptitle("Best and worst predicted faces with their predicted distributions "
                    "(green: true, red dashed: predicted)", fontsize=10)
    return _save(figure, path)


def plot_attention_grid(groups: Sequence[tuple[str, Sequence[FaceSample]]], path: str) -> str:
    """The faces' attention overlays (``FaceSample.attention``), one row per group.

    Args:
      groups: (title, faces) pairs whose faces carry an attention overlay.
      path: PNG to write.
    Returns:
      ``path``.
    Raises:
      ValueError: a face without an attention overlay.
    """
    plt = _pyplot()
    columns = max(1, max(len(faces) for _, faces in groups))
    figure, panels = plt.subplots(len(groups), columns, squeeze=False,
                                  figsize=(1.9 * columns, 2.3 * len(groups) + 0.5))
    for row, (title, faces) in zip(panels, groups):
        for c, axes in enumerate(row):
            axes.set_xticks([])
            axes.set_yticks([])
            if c >= len(faces):
                axes.set_axis_off()
                continue
            if faces[c].attention is None:
                raise ValueError(f"face {c} of '{title}' has no attention overlay")
            axes.imshow(faces[c].attention)
            axes.set_title(_face_title(faces[c]), fontsize=8)
            if c == 0:
                axes.set_ylabel(title, fontsize=10)
    figure.suptitle("Where the model looks: its attention map over each face (stretched per "
                    "face; blue lowest, red highest)", fontsize=10)
    return _save(figure, path)


def _face_title(face: FaceSample) -> str:
    """'true 31, pred 29.4\nerror -1.6' above a face."""
    error = face.predicted - face.true
    return (f"true {face.true:g}, pred {face.predicted:.1f}\n"
            f"error {error:+.1f}".replace("-0.0", "0.0"))


def select_best_worst(true: np.ndarray, predicted: np.ndarray,
                      count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indexes of the ``count`` smallest and ``count`` largest absolute errors.

    Returns:
      (best, worst): int arrays; best ascending by |error|, worst descending. With fewer
      than 2·count samples the two may overlap.
    """
    error = np.abs(np.asarray(predicted, np.float64) - np.asarray(true, np.float64))
    order = np.argsort(error, kind="stable")
    count = min(count, len(order))
    return order[:count], order[::-1][:count]


def write_report(out_dir: str, results: Mapping[str, Any], true: np.ndarray,
                 predicted: np.ndarray, label_space: LabelSpace,
                 faces: Sequence[tuple[str, Sequence[FaceSample]]]) -> dict[str, str]:
    """Draw every plot into ``out_dir`` and the HTML page that embeds them.

    Args:
      out_dir: output folder (created).
      results: the evaluation dict (tfdldl.evaluate_metrics.compute_results); needs
        "task" (the data's task: the plots' units), "bands" and "cs" ({"thetas",
        "values"}).
      true, predicted: float [N], label units.
      label_space: the model's label space.
      faces: (title, samples) groups for the face grid (may be empty). When their
        samples carry attention overlays they are drawn too; otherwise the page says the
        model has no attention map (:data:`NO_ATTENTION`).
    Returns:
      name -> path of every file written ("scatter", "bands", "cs", "slices" when the
      results have slices, "faces", "attention" with overlays, "html").
    """
    os.makedirs(out_dir, exist_ok=True)
    task = results["task"]
    written = {
        "scatter": plot_scatter(true, predicted, label_space,
                                os.path.join(out_dir, SCATTER_PNG)),
        "bands": plot_error_by_band(results["bands"], label_space,
                                    os.path.join(out_dir, BANDS_PNG), task=task),
        "cs": plot_cs_curve(results["cs"]["thetas"], results["cs"]["values"], label_space,
                            os.path.join(out_dir, CS_PNG), task=task),
    }
    if results.get("slices"):
        written["slices"] = plot_slices(results["slices"], label_space,
                                        os.path.join(out_dir, SLICES_PNG), task=task)
    notes = ()
    if faces and any(samples for _, samples in faces):
        written["faces"] = plot_face_grid(faces, label_space, os.path.join(out_dir, FACES_PNG))
        if all(sample.attention is not None for _, samples in faces for sample in samples):
            written["attention"] = plot_attention_grid(faces,
                                                       os.path.join(out_dir, ATTENTION_PNG))
        else:
            notes = (NO_ATTENTION,)
    captions = {"scatter": "Predicted vs true", "bands": "Error by band",
                "cs": "Cumulative score", "slices": "Error by group",
                "faces": "Best and worst predicted faces",
                "attention": "Attention maps on the best and worst predicted faces"}
    written["html"] = write_html(out_dir, results,
                                 {captions[key]: path for key, path in written.items()}, notes)
    return written

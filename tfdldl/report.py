"""The evaluation report a person looks at: PNG plots and one self-contained HTML page.

Plots (all from NumPy arrays, so they can be tested without a model):
  * predicted vs true scatter, with the identity line;
  * mean absolute error and bias per label band (age decade), with sample counts;
  * the cumulative score curve CS(θ);
  * MAE, bias and counts per group (gender, race...) when the data has groups;
  * a grid of the best and the worst predicted faces, each above its predicted
    distribution with the true and predicted values marked.
``report.html`` embeds every PNG (base64) and the metric tables (including the coverage
of the predicted intervals), so it can be mailed or opened from anywhere. A few lines of
script mark the page once loaded: ``<body data-broken-images="N">`` counts images the
browser could not decode (tests/test_report.py reads it with headless Chromium).

matplotlib is an optional extra (``pip install tfdldl[report]``); it is imported on first
use and its absence is a :class:`ReportError` saying how to install it.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
from typing import Any, Mapping, Sequence

import numpy as np

from tfdldl import safe_io
from tfdldl.label_space import LabelSpace

SCATTER_PNG = "scatter.png"
BANDS_PNG = "error_by_band.png"
CS_PNG = "cs_curve.png"
FACES_PNG = "best_worst_faces.png"
SLICES_PNG = "error_by_group.png"
HTML_NAME = "report.html"


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
    """

    image: np.ndarray
    true: float
    predicted: float
    distribution: np.ndarray | None


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


def _units(label_space: LabelSpace) -> str:
    """The unit of the label for axis titles: years for age."""
    return "years" if label_space.name == "age" else f"{label_space.name} units"


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
                       path: str) -> str:
    """Bars of mean absolute error per label band, bias as dots, counts above the bars.

    Args:
      bands: dicts with "low", "high", "count", "mae", "bias" (``tfdldl.evaluate.band_table``);
        empty bands have mae/bias None.
      label_space: names the quantity.
      path: PNG to write.
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
    axes.set_ylabel(f"error ({_units(label_space)})")
    axes.set_title(f"Error by {label_space.name} band")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="best")
    return _save(figure, path)


def plot_cs_curve(thetas: Sequence[float], scores: Sequence[float], label_space: LabelSpace,
                  path: str) -> str:
    """The cumulative score CS(θ): share of faces with |error| ≤ θ, against θ.

    Args:
      thetas: float [T], error thresholds, label units.
      scores: float [T], CS values in 0..1.
      label_space: names the quantity.
      path: PNG to write.
    Returns:
      ``path``.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 4.0))
    axes.plot(thetas, 100.0 * np.asarray(scores, np.float64), marker="o", markersize=3,
              color="tab:green")
    axes.set_xlabel(f"error threshold θ ({_units(label_space)})")
    axes.set_ylabel("cumulative score CS(θ), %")
    axes.set_ylim(0, 100)
    axes.set_xlim(thetas[0], thetas[-1])
    axes.set_title("Cumulative score")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_slices(slices: Mapping[str, Mapping[str, Any]], label_space: LabelSpace,
                path: str) -> str:
    """MAE bars and bias dots per group, one panel per attribute (gender, race, ...).

    Args:
      slices: attribute -> ``tfdldl.evaluate.slice_table`` dict ("groups" with "name",
        "count", "mae", "bias"; "largest_gap").
      label_space: names the quantity.
      path: PNG to write.
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
        axes.set_ylabel(f"error ({_units(label_space)})")
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
            error = face.predicted - face.true
            image_axes.set_title(f"true {face.true:g}, pred {face.predicted:.1f}\n"
                                 f"error {error:+.1f}".replace("-0.0", "0.0"), fontsize=8)
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


def _image_tag(path: str, alt: str) -> str:
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _format(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _slice_table(attribute: str, table: Mapping[str, Any]) -> str:
    """An HTML table of one attribute's groups: count, MAE, bias, CS@θ; gap in the caption."""
    theta = table["theta"]
    rows = "".join(f"<tr><td>{html.escape(group['name'])}</td><td>{group['count']}</td>"
                   f"<td>{_format(group['mae'])}</td><td>{_format(group['bias'])}</td>"
                   f"<td>{_format(group['cs'])}</td></tr>" for group in table["groups"])
    gap = table["largest_gap"]
    caption = (f"By {html.escape(attribute)} (largest MAE gap {_format(gap['mae'])}: "
               f"{html.escape(gap['worst'])} vs {html.escape(gap['best'])})")
    return (f"<table><caption>{caption}</caption><tr><th>{html.escape(attribute)}</th>"
            f"<th>count</th><th>MAE</th><th>bias</th><th>CS@{theta:g}</th></tr>{rows}</table>")


def _interval_table(intervals: Mapping[str, Any] | None) -> str:
    """Coverage and mean width of the central intervals, uncalibrated and calibrated."""
    if not intervals:
        return ""
    temperature = intervals["temperature"]
    rows = "".join(
        f"<tr><td>{float(mass) * 100:g} %</td><td>{_format(raw['coverage'])}</td>"
        f"<td>{_format(raw['mean_width'])}</td>"
        f"<td>{_format(intervals['calibrated'][mass]['coverage'])}</td>"
        f"<td>{_format(intervals['calibrated'][mass]['mean_width'])}</td></tr>"
        for mass, raw in intervals["uncalibrated"].items())
    return ("<table><caption>Predicted intervals: share of true labels inside "
            f"(temperature {temperature:.3g})</caption><tr><th>interval</th>"
            "<th>coverage</th><th>mean width</th><th>calibrated coverage</th>"
            f"<th>calibrated width</th></tr>{rows}</table>")


def write_html(out_dir: str, results: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """Write ``out_dir/report.html``: headline metrics, band table and the embedded PNGs.

    Args:
      out_dir: folder for the page.
      results: the evaluation dict (``tfdldl.evaluate.compute_results`` plus context).
      figures: caption -> PNG path, in display order.
    Returns:
      The HTML path.
    """
    headline_keys = ["count", "mae", "bias", "rmse", "pearson", "epsilon_error",
                     "mean_predicted_stddev", "flip_averaged"]
    headline = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{_format(results.get(key))}</td></tr>"
        for key in headline_keys if key in results)
    cs_at = "".join(f"<tr><th>CS@{html.escape(theta)}</th><td>{_format(score)}</td></tr>"
                    for theta, score in results.get("cs_at", {}).items())
    band_rows = "".join(
        f"<tr><td>{band['low']:g}–{band['high']:g}</td><td>{band['count']}</td>"
        f"<td>{_format(band['mae'])}</td><td>{_format(band['bias'])}</td></tr>"
        for band in results.get("bands", []))
    pictures = "".join(f"<figure>{_image_tag(path, caption)}<figcaption>"
                       f"{html.escape(caption)}</figcaption></figure>"
                       for caption, path in figures.items())
    slice_tables = "".join(_slice_table(attribute, table)
                           for attribute, table in (results.get("slices") or {}).items())
    space = results.get("label_space", {})
    title = (f"tfdldl evaluation: {results.get('model', '')} on "
             f"{results.get('data', '')} [{results.get('split', '')}]")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 1em 2em 1em 0; display: inline-table;
         vertical-align: top; }}
th, td {{ border: 1px solid #ccc; padding: 3px 10px; text-align: right; }}
figure {{ display: inline-block; margin: 1em; vertical-align: top; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Label space: {html.escape(str(space.get('name', '')))} [{_format(space.get('minimum'))},
{_format(space.get('maximum'))}] step {_format(space.get('step'))}.
Errors are predicted − true, in label units.</p>
<table><caption>Metrics</caption>{headline}</table>
<table><caption>Cumulative score</caption>{cs_at}</table>
<table><caption>By band</caption><tr><th>band</th><th>count</th><th>MAE</th><th>bias</th></tr>
{band_rows}</table>
{slice_tables}{_interval_table(results.get("intervals"))}
<div>{pictures}</div>
<script>
window.addEventListener("load", function () {{
  var broken = Array.prototype.filter.call(document.images, function (image) {{
    return !image.complete || image.naturalWidth === 0; }});
  document.body.setAttribute("data-broken-images", String(broken.length));
}});
</script>
</body></html>
"""
    path = os.path.join(out_dir, HTML_NAME)
    with safe_io.atomic_file(path) as handle:  # never writes through a planted link
        handle.write(page)
    return path


def write_report(out_dir: str, results: Mapping[str, Any], true: np.ndarray,
                 predicted: np.ndarray, label_space: LabelSpace,
                 faces: Sequence[tuple[str, Sequence[FaceSample]]]) -> dict[str, str]:
    """Draw every plot into ``out_dir`` and the HTML page that embeds them.

    Args:
      out_dir: output folder (created).
      results: the evaluation dict; needs "bands" and "cs" ({"thetas", "values"}).
      true, predicted: float [N], label units.
      label_space: the model's label space.
      faces: (title, samples) groups for the face grid (may be empty).
    Returns:
      name -> path of every file written ("scatter", "bands", "cs", "slices" when the
      results have slices, "faces", "html").
    """
    os.makedirs(out_dir, exist_ok=True)
    written = {
        "scatter": plot_scatter(true, predicted, label_space,
                                os.path.join(out_dir, SCATTER_PNG)),
        "bands": plot_error_by_band(results["bands"], label_space,
                                    os.path.join(out_dir, BANDS_PNG)),
        "cs": plot_cs_curve(results["cs"]["thetas"], results["cs"]["values"], label_space,
                            os.path.join(out_dir, CS_PNG)),
    }
    if results.get("slices"):
        written["slices"] = plot_slices(results["slices"], label_space,
                                        os.path.join(out_dir, SLICES_PNG))
    if faces and any(samples for _, samples in faces):
        written["faces"] = plot_face_grid(faces, label_space, os.path.join(out_dir, FACES_PNG))
    captions = {"scatter": "Predicted vs true", "bands": "Error by band",
                "cs": "Cumulative score", "slices": "Error by group",
                "faces": "Best and worst predicted faces"}
    written["html"] = write_html(out_dir, results,
                                 {captions[key]: path for key, path in written.items()})
    return written

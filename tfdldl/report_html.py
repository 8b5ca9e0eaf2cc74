"""The evaluation report's page: ``report.html``, metric tables and the embedded PNGs.

Self-contained (every PNG inline as base64), so it can be mailed or opened from anywhere.
A few lines of script mark the page once loaded: ``<body data-broken-images="N">``
counts images the browser could not decode (tests/test_report.py reads it with headless
Chromium). The plots themselves: :mod:`tfdldl.report`.
"""

from __future__ import annotations

import base64
import html
import os
from typing import Any, Mapping

from tfdldl import safe_io

HTML_NAME = "report.html"


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


def _categorical_tables(results: Mapping[str, Any]) -> str:
    """One confusion table per categorical head of the results ("" without any)."""
    return "".join(_confusion_table(head, results[f"{head}_accuracy"],
                                    results[f"{head}_confusion"])
                   for head in results.get("categorical_heads", ()))


def _confusion_table(head: str, accuracy: float | None, confusion: Mapping[str, Any]) -> str:
    """A categorical head's confusion matrix (rows true, columns predicted), accuracy in
    the caption."""
    names = confusion["class_names"]
    columns = "".join(f"<th>predicted {html.escape(name)}</th>" for name in names)
    rows = "".join(f"<tr><th>true {html.escape(name)}</th>"
                   + "".join(f"<td>{count}</td>" for count in row) + "</tr>"
                   for name, row in zip(names, confusion["counts"]))
    return (f"<table><caption>{html.escape(head[:1].upper() + head[1:])}: accuracy "
            f"{_format(accuracy)} "
            f"({confusion['unknown']} faces of unknown {html.escape(head)} left out)</caption>"
            f"<tr><th></th>{columns}</tr>{rows}</table>")


def _age_group_table(groups: Mapping[str, Any] | None) -> str:
    """Faces and accuracy (recall) per true age group; overall and one-off in the caption;
    "" when the results have no age groups."""
    if not groups:
        return ""
    rows = "".join(f"<tr><td>{html.escape(group['name'])}</td><td>{group['count']}</td>"
                   f"<td>{_format(group['accuracy'])}</td></tr>" for group in groups["groups"])
    return (f"<table><caption>Age groups: accuracy {_format(groups['accuracy'])}, one-off "
            f"{_format(groups['one_off_accuracy'])}</caption><tr><th>true group</th>"
            f"<th>count</th><th>accuracy</th></tr>{rows}</table>")


_STYLE = """<style>
body { font-family: sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 2em 1em 0; display: inline-table;
         vertical-align: top; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
figure { display: inline-block; margin: 1em; vertical-align: top; }
img { max-width: 100%; }
</style>"""

# Marks the page once loaded: <body data-broken-images="N">, N images the browser could
# not decode.
_BROKEN_IMAGES_SCRIPT = """<script>
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (image) {
    return !image.complete || image.naturalWidth === 0; });
  document.body.setAttribute("data-broken-images", String(broken.length));
});
</script>"""


def _metric_tables(results: Mapping[str, Any]) -> str:
    """The headline metrics, the cumulative scores and the per-band table."""
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
    return (f"<table><caption>Metrics</caption>{headline}</table>\n"
            f"<table><caption>Cumulative score</caption>{cs_at}</table>\n"
            "<table><caption>By band</caption><tr><th>band</th><th>count</th><th>MAE</th>"
            f"<th>bias</th></tr>\n{band_rows}</table>")


def write_html(out_dir: str, results: Mapping[str, Any], figures: Mapping[str, str],
               notes: tuple[str, ...] = ()) -> str:
    """Write ``out_dir/report.html``: headline metrics, tables and the embedded PNGs.

    Args:
      out_dir: folder for the page.
      results: the evaluation dict (``tfdldl.evaluate.compute_results`` plus context).
      figures: caption -> PNG path, in display order.
      notes: sentences shown after the figures (e.g. that the model has no attention map).
    Returns:
      The HTML path.
    """
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
{_STYLE}</head><body>
<h1>{html.escape(title)}</h1>
<p>Label space: {html.escape(str(space.get('name', '')))} [{_format(space.get('minimum'))},
{_format(space.get('maximum'))}] step {_format(space.get('step'))}.
Errors are predicted − true, in label units.</p>
{_metric_tables(results)}
{slice_tables}{_categorical_tables(results)}
{_age_group_table(results.get("age_groups"))}{_interval_table(results.get("intervals"))}
<div>{pictures}</div>
{"".join(f"<p>{html.escape(note)}</p>" for note in notes)}
{_BROKEN_IMAGES_SCRIPT}
</body></html>
"""
    path = os.path.join(out_dir, HTML_NAME)
    with safe_io.atomic_file(path) as handle:  # never writes through a planted link
        handle.write(page)
    return path

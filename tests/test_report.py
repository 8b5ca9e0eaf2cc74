"""The evaluation report: PNG plots and the HTML page, drawn from arrays (no model needed)."""

import base64
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep.synthetic import render
from tfdldl import report
from tfdldl.evaluate import SplitPredictions, compute_results
from tfdldl.inference import distribution_stddev
from tfdldl.label_space import AGE, LabelSpace

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _predictions(count=120, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(1, 90, count).astype(np.float32)
    value = np.clip(true + rng.normal(0, 5, count), 0, 100).astype(np.float32)
    distribution = AGE.gaussian(value, 4.0)
    encoded = [cv2.imencode(".jpg", render(float(y), AGE, 48, rng))[1].tobytes() for y in true]
    return SplitPredictions(true=true, sigma=np.full(count, 2.0, np.float32), value=value,
                            stddev=distribution_stddev(distribution, AGE.grid),
                            distribution=distribution, encoded=encoded,
                            codes={"gender": np.arange(count) % 2,
                                   "group": np.arange(count) % 3 - 1})


def _read_png(path):
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return data, image


def _write_report(out_dir):
    from tfdldl.evaluate import face_groups

    predictions = _predictions()
    results = {"model": "m", "data": "d", "split": "test", "label_space": AGE.to_dict(),
               **compute_results(predictions, AGE, per_sample_sigma=False, temperature=0.8,
                                 groups=("tone", ["light", "dark"]))}
    written = report.write_report(str(out_dir), results, predictions.true, predictions.value,
                                  AGE, face_groups(predictions, count=4))
    return results, written


def test_report_writes_every_plot_and_an_html_page_embedding_them(tmp_path):
    results, written = _write_report(tmp_path)
    assert set(written) == {"scatter", "bands", "cs", "slices", "faces", "html"}
    for key in ("scatter", "bands", "cs", "slices", "faces"):
        data, image = _read_png(written[key])
        assert image.shape[0] > 200 and image.shape[1] > 300, key
        assert image.std() > 10, f"{key} is a blank picture"
    page = open(written["html"], encoding="utf-8").read()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 5
    assert base64.b64decode(embedded[0]).startswith(PNG_SIGNATURE)
    assert f"{results['mae']:.4g}" in page
    # bands, 2 genders, 2 known tones (code -1 is unknown), 8 age groups, 3 interval masses
    assert page.count("<tr><td>") == len(results["bands"]) + 2 + 2 + 8 + 3
    assert "By tone (largest MAE gap" in page and "temperature 0.8" in page
    assert f"Age groups: accuracy {results['age_groups']['accuracy']:.4g}" in page
    # no attention overlays given: the page says so instead of drawing an empty figure
    assert report.NO_ATTENTION in page and "attention" not in written


def test_report_draws_attention_overlays_and_the_gender_table(tmp_path):
    """Faces that carry attention overlays get their own figure (no 'no attention' note);
    a gender model's confusion matrix is a table with the accuracy in its caption."""
    import dataclasses

    from tfdldl.attention_maps import overlay
    from tfdldl.evaluate import face_groups

    predictions = _predictions(count=40)
    probability = np.full((40, 2), 0.1, np.float32)
    probability[np.arange(40), (np.arange(40) // 3) % 2] = 0.9  # some right, some wrong
    predictions.probabilities = {"gender_probability": probability}
    results = {"model": "m", "data": "d", "split": "test", "label_space": AGE.to_dict(),
               **compute_results(predictions, AGE, per_sample_sigma=False,
                                 class_names={"gender_probability": ("man", "woman")},
                                 class_attributes={"gender_probability": "gender"})}
    heat = np.outer(np.arange(4), np.ones(4))  # hottest at the bottom
    faces = [(title, [dataclasses.replace(face, attention=overlay(face.image, heat))
                      for face in samples])
             for title, samples in face_groups(predictions, count=3)]
    written = report.write_report(str(tmp_path), results, predictions.true, predictions.value,
                                  AGE, faces)
    _, image = _read_png(written["attention"])
    assert image.shape[0] > 200 and image.std() > 10
    page = open(written["html"], encoding="utf-8").read()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 6
    assert report.NO_ATTENTION not in page
    counts = results["gender_confusion"]["counts"]
    assert f"Gender: accuracy {results['gender_accuracy']:.4g}" in page
    assert (f"<tr><th>true woman</th><td>{counts[1][0]}</td><td>{counts[1][1]}</td></tr>"
            in page)


def test_report_files_replace_planted_links_and_leave_their_targets_alone(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "report"
    out.mkdir()
    for name in (report.HTML_NAME, report.SCATTER_PNG):
        os.symlink(outside, out / name)
    _, written = _write_report(out)
    assert outside.read_text() == "keep me"
    for key in ("html", "scatter"):
        assert not os.path.islink(written[key]) and os.path.getsize(written[key]) > 1000


def test_slices_and_intervals_in_the_results():
    predictions = _predictions()
    results = compute_results(predictions, AGE, per_sample_sigma=False, temperature=0.8,
                              groups=("tone", ["light", "dark"]))
    error = predictions.value.astype(np.float64) - predictions.true
    female = results["slices"]["gender"]["groups"][1]
    assert (female["name"], female["count"]) == ("female", 60)
    assert female["mae"] == pytest.approx(np.abs(error[1::2]).mean())
    assert female["cs"] == pytest.approx(np.mean(np.abs(error[1::2]) <= 5))
    tone = results["slices"]["tone"]
    assert tone["unknown"] == 40 and [g["name"] for g in tone["groups"]] == ["light", "dark"]
    maes = [g["mae"] for g in tone["groups"]]
    assert tone["largest_gap"]["mae"] == pytest.approx(max(maes) - min(maes))
    intervals = results["intervals"]
    assert set(intervals["uncalibrated"]) == {"0.5", "0.8", "0.9"}
    # σ = 4 predictions around a value 5 years off on average: the 90 % interval is ±6.6
    assert 0.6 < intervals["uncalibrated"]["0.9"]["coverage"] < 0.95
    assert (intervals["calibrated"]["0.9"]["mean_width"]
            < intervals["uncalibrated"]["0.9"]["mean_width"])  # T < 1 sharpens


# Debian's full browser, or its smaller headless-only build (what .ci/run installs).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-headless-shell")


def _chromium_dom(page: str, tmp_path) -> tuple[str, str]:
    """(the DOM after load, Chromium's stderr) of ``page`` in headless Chromium."""
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", "file://" + os.path.abspath(page)],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@pytest.mark.skipif(CHROMIUM is None, reason=(
    "no headless Chromium on PATH (looked for chromium and chromium-headless-shell); "
    "Debian: apt-get install chromium-headless-shell (.ci/run does when it has root or sudo)"))
def test_report_opens_in_a_real_browser_with_every_image_decoded(tmp_path):
    _, written = _write_report(tmp_path / "report")
    dom, log = _chromium_dom(written["html"], tmp_path)
    assert '<body data-broken-images="0">' in dom
    assert dom.count("<img") == 5 and "By gender" in dom
    assert "Uncaught" not in log and "CONSOLE" not in log
    # The check can fail: a corrupted picture is counted as broken.
    page = open(written["html"], encoding="utf-8").read()
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"base64,[^\"]{64}", "base64,AAAA", page, count=1),
                      encoding="utf-8")
    dom, _ = _chromium_dom(str(broken), tmp_path)
    assert '<body data-broken-images="1">' in dom


def test_face_grid_shows_the_smallest_and_largest_errors_first():
    true = np.array([10, 20, 30, 40, 50], np.float32)
    predicted = np.array([11, 20, 45, 38, 20], np.float32)
    best, worst = report.select_best_worst(true, predicted, 2)
    assert best.tolist() == [1, 0]
    assert worst.tolist() == [4, 2]


def test_report_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(report.ReportError, match=r"pip install 'tfdldl\[report\]'"):
        report.plot_cs_curve([0, 1], [0.0, 0.5], AGE, str(tmp_path / "cs.png"), task="age")


def test_the_plots_units_follow_the_results_task_not_the_label_space_name(tmp_path,
                                                                          monkeypatch):
    """An age model whose label space has another name still plots errors in years; the
    unit comes from results["task"] (the manifest's task), as the metrics' bands do."""
    titles = []

    def record_titles(figure, path):  # instead of drawing the PNG (other tests do)
        titles.extend(text for axes in figure.axes
                      for text in (axes.get_xlabel(), axes.get_ylabel()))
        report._pyplot().close(figure)
        return path

    monkeypatch.setattr(report, "_save", record_titles)
    monkeypatch.setattr(report, "write_html", lambda *args: "report.html")
    predictions = _predictions(count=40)
    apparent = LabelSpace(0.0, 100.0, 1.0, name="apparent_age")
    for task, unit in (("age", "(years)"), ("attractiveness", "(apparent_age units)")):
        results = compute_results(predictions, apparent, per_sample_sigma=False,
                                  temperature=1.0, task=task)
        titles.clear()
        report.write_report(str(tmp_path / task), {"model": "m", "data": "d", "split": "test",
                                                   "label_space": apparent.to_dict(), **results},
                            predictions.true, predictions.value, apparent, [])
        errors = [title for title in titles if title.startswith("error")]
        assert len(errors) >= 3 and all(title.endswith(unit) for title in errors), titles

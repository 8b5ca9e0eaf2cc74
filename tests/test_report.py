"""The evaluation report: PNG plots and the HTML page, drawn from arrays (no model needed)."""

import base64
import re
import sys

import cv2
import numpy as np
import pytest

from data_prep.synthetic import render
from tfdldl import report
from tfdldl.evaluate import SplitPredictions, compute_results
from tfdldl.inference import distribution_stddev
from tfdldl.label_space import AGE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _predictions(count=120, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(1, 90, count).astype(np.float32)
    value = np.clip(true + rng.normal(0, 5, count), 0, 100).astype(np.float32)
    distribution = AGE.gaussian(value, 4.0)
    encoded = [cv2.imencode(".jpg", render(float(y), AGE, 48, rng))[1].tobytes() for y in true]
    return SplitPredictions(true=true, sigma=np.full(count, 2.0, np.float32), value=value,
                            stddev=distribution_stddev(distribution, AGE.grid),
                            distribution=distribution, encoded=encoded)


def _read_png(path):
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return data, image


def test_report_writes_every_plot_and_an_html_page_embedding_them(tmp_path):
    from tfdldl.evaluate import face_groups

    predictions = _predictions()
    results = {"model": "m", "data": "d", "split": "test", "label_space": AGE.to_dict(),
               **compute_results(predictions, AGE, per_sample_sigma=False)}
    written = report.write_report(str(tmp_path), results, predictions.true, predictions.value,
                                  AGE, face_groups(predictions, count=4))
    assert set(written) == {"scatter", "bands", "cs", "faces", "html"}
    for key in ("scatter", "bands", "cs", "faces"):
        data, image = _read_png(written[key])
        assert image.shape[0] > 200 and image.shape[1] > 300, key
        assert image.std() > 10, f"{key} is a blank picture"
    page = open(written["html"], encoding="utf-8").read()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 4
    assert base64.b64decode(embedded[0]).startswith(PNG_SIGNATURE)
    assert f"{results['mae']:.4g}" in page
    assert page.count("<tr><td>") == len(results["bands"])


def test_face_grid_shows_the_smallest_and_largest_errors_first():
    true = np.array([10, 20, 30, 40, 50], np.float32)
    predicted = np.array([11, 20, 45, 38, 20], np.float32)
    best, worst = report.select_best_worst(true, predicted, 2)
    assert best.tolist() == [1, 0]
    assert worst.tolist() == [4, 2]


def test_report_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(report.ReportError, match=r"pip install 'tfdldl\[report\]'"):
        report.plot_cs_curve([0, 1], [0.0, 0.5], AGE, str(tmp_path / "cs.png"))

"""Temperature scaling of predicted distributions (tfdldl.calibration), on NumPy arrays."""

import json

import numpy as np
import pytest

from tfdldl import calibration
from tfdldl.inference import central_interval
from tfdldl.label_space import AGE


def _overconfident_model(count=4000, temperature=0.5, seed=0):
    """Labels drawn from true distributions p, and a model that reports p^(1/temperature)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(10, 80, count)
    true_distribution = AGE.gaussian(centres.astype(np.float32), 6.0).astype(np.float64)
    true_distribution /= true_distribution.sum(axis=1, keepdims=True)
    cdf = np.cumsum(true_distribution, axis=1)
    labels = AGE.grid[(cdf < rng.random((count, 1))).sum(axis=1)].astype(np.float32)
    reported = calibration.apply_temperature(true_distribution, temperature)
    return reported, labels


def test_temperature_one_is_the_identity_and_small_temperatures_sharpen():
    distribution = AGE.gaussian(np.float32([30, 60]), 5.0)
    np.testing.assert_allclose(calibration.apply_temperature(distribution, 1.0), distribution)
    sharp = calibration.apply_temperature(distribution, 0.5)
    np.testing.assert_allclose(sharp.sum(axis=1), 1.0, rtol=1e-5)
    assert np.argmax(sharp, axis=1).tolist() == [30, 60]  # the ranking is kept
    low, high = central_interval(sharp, AGE.grid, 0.9)
    wide_low, wide_high = central_interval(distribution, AGE.grid, 0.9)
    assert np.all(high - low < wide_high - wide_low)
    with pytest.raises(ValueError, match="positive"):
        calibration.apply_temperature(distribution, 0.0)


def test_fit_recovers_the_temperature_that_calibrates_an_overconfident_model():
    reported, labels = _overconfident_model()
    before = calibration.interval_coverage(reported, labels, AGE.grid)
    assert before["0.9"]["coverage"] < 0.8  # too narrow: it misses many labels
    temperature = calibration.fit_temperature(reported, labels, AGE.grid)
    assert temperature == pytest.approx(2.0, rel=0.08)  # (p^2)^(1/2) = p
    after = calibration.interval_coverage(
        calibration.apply_temperature(reported, temperature), labels, AGE.grid)
    for mass in ("0.5", "0.8", "0.9"):  # grid intervals hold at least their mass
        assert float(mass) - 0.03 <= after[mass]["coverage"] <= float(mass) + 0.07, mass
    assert after["0.9"]["mean_width"] > before["0.9"]["mean_width"]
    assert (calibration.negative_log_likelihood(reported, labels, AGE.grid, temperature)
            < calibration.negative_log_likelihood(reported, labels, AGE.grid))


def test_coverage_counts_labels_inside_the_interval_ends():
    distribution = np.zeros((2, AGE.num_classes), np.float32)
    distribution[:, 20:31] = 1.0 / 11  # 90 % interval [20, 30] (CDF steps of 1/11)
    coverage = calibration.interval_coverage(distribution, np.float32([30, 31]), AGE.grid,
                                             masses=(0.9,))
    assert coverage == {"0.9": {"coverage": 0.5, "mean_width": 10.0}}


def test_stored_temperature_round_trips_and_bad_files_are_named(tmp_path):
    assert calibration.read_temperature(tmp_path) == 1.0  # uncalibrated model
    calibration.write_calibration(tmp_path, {"temperature": 0.7, "fitted_on": {"split": "val"}})
    assert calibration.read_temperature(tmp_path) == 0.7
    (tmp_path / "assets" / calibration.CALIBRATION_ASSET).write_text(json.dumps({"t": 1}))
    with pytest.raises(ValueError, match="calibration.json holds no valid temperature"):
        calibration.read_temperature(tmp_path)


def test_calibrated_outputs_keep_the_value_and_narrow_the_spread():
    distribution = AGE.gaussian(np.float32([40]), 8.0)
    outputs = {"value": np.float32([40.2]), "stddev": np.float32([8.0]),
               "distribution": distribution}
    calibrated = calibration.calibrate_outputs(outputs, 0.5, AGE.grid)
    assert calibrated["value"] is outputs["value"]
    assert calibrated["stddev"][0] == pytest.approx(8.0 / np.sqrt(2), rel=0.02)
    assert calibration.calibrate_outputs(outputs, 1.0, AGE.grid) == outputs

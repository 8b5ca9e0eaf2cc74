"""Metrics: NumPy functions and streaming Keras metrics against plain references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdldl import heads, metrics, models
from tfdldl.label_space import SCUT_FBP5500


def random_predictions(n=200, seed=0, low=0.0, high=100.0, noise=6.0):
    rng = np.random.default_rng(seed)
    true = rng.uniform(low, high, n)
    pred = true + rng.normal(scale=noise, size=n)
    return pred, true, rng


def test_numpy_metrics_against_plain_formulas():
    pred, true, _ = random_predictions()
    errors = np.abs(pred - true)
    assert metrics.mae(pred, true) == pytest.approx(errors.mean())
    assert metrics.rmse(pred, true) == pytest.approx(np.sqrt((errors ** 2).mean()))
    assert metrics.pearson(pred, true) == pytest.approx(np.corrcoef(pred, true)[0, 1])
    for theta in (0, 1, 2.5, 5, 10):
        assert metrics.cumulative_score(pred, true, theta) == pytest.approx(
            sum(e <= theta for e in errors) / len(errors))
    curve = metrics.cs_curve(pred, true, np.arange(0, 11))
    assert np.all(np.diff(curve) >= 0) and 0 < curve[5] < curve[10] < 1
    assert curve[5] == metrics.cumulative_score(pred, true, 5)


def test_epsilon_error_with_per_sample_sigma():
    pred, mean, rng = random_predictions(n=50)
    sigma = rng.uniform(0.5, 8.0, 50)
    sigma[:3] = 0.0  # ChaLearn has a few; counted with σ = 1e-3, not NaN
    expected = np.mean([1 - np.exp(-(p - m) ** 2 / (2 * max(s, 1e-3) ** 2))
                        for p, m, s in zip(pred, mean, sigma)])
    assert metrics.epsilon_error(pred, mean, sigma) == pytest.approx(expected)
    assert 0 < expected < 1
    assert metrics.epsilon_error(mean, mean, sigma) == 0.0
    assert metrics.epsilon_error(pred, mean, 4.0) == pytest.approx(
        np.mean(1 - np.exp(-(pred - mean) ** 2 / 32.0)))


def test_numpy_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.mae([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        metrics.rmse([], [])
    with pytest.raises(ValueError, match="sigma has 2 values for 3 predictions"):
        metrics.epsilon_error([1, 2, 3], [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite sigma >= 0"):
        metrics.epsilon_error([1, 2], [1, 2], [1, np.nan])
    assert np.isnan(metrics.pearson([3, 3, 3], [1, 2, 3]))


def stream(metric, batches, weights=None):
    metric.reset_state()
    for i, (true, pred) in enumerate(batches):
        metric.update_state(true, pred, None if weights is None else weights[i])
    return float(metric.result())


def test_keras_metrics_stream_over_uneven_batches():
    pred, true, rng = random_predictions(n=103, seed=1)
    pred, true = pred.astype(np.float32), true.astype(np.float32)
    cuts = [0, 40, 41, 90, 103]
    batches = [(true[a:b], pred[a:b]) for a, b in zip(cuts, cuts[1:])]
    p64, t64 = pred.astype(np.float64), true.astype(np.float64)
    checks = {
        metrics.MeanAbsoluteError(): metrics.mae(p64, t64),
        metrics.RootMeanSquaredError(): metrics.rmse(p64, t64),
        metrics.CumulativeScore(5.0): metrics.cumulative_score(p64, t64, 5.0),
        metrics.PearsonCorrelation(): metrics.pearson(p64, t64),
    }
    for metric, expected in checks.items():
        assert stream(metric, batches) == pytest.approx(expected, rel=1e-5), metric.name
        # reset_state forgets everything: a second pass equals a fresh metric's.
        fresh = type(metric)(**_args(metric))
        assert stream(metric, batches[:1]) == pytest.approx(stream(fresh, batches[:1]))
    # Sample weights count as repetitions.
    weights = [np.where(np.arange(b - a) % 2 == 0, 2.0, 1.0) for a, b in zip(cuts, cuts[1:])]
    repeat = np.concatenate(weights).astype(int)
    assert stream(metrics.MeanAbsoluteError(), batches, weights) == pytest.approx(
        metrics.mae(np.repeat(p64, repeat), np.repeat(t64, repeat)), rel=1e-5)


def _args(metric):
    return {"theta": metric.theta} if isinstance(metric, metrics.CumulativeScore) else {}


def test_pearson_stays_exact_when_predictions_barely_vary():
    """Early in training predictions cluster around the mean; float32 sums would cancel."""
    rng = np.random.default_rng(2)
    true = rng.uniform(20, 80, 256).astype(np.float32)
    pred = (50.0 + 0.01 * (true - 50) + rng.normal(scale=0.01, size=256)).astype(np.float32)
    batches = [(true[i:i + 32], pred[i:i + 32]) for i in range(0, 256, 32)]
    assert stream(metrics.PearsonCorrelation(), batches) == pytest.approx(
        metrics.pearson(pred, true), abs=1e-4)


def test_keras_epsilon_error_matches_numpy():
    pred, mean, rng = random_predictions(n=40, seed=3)
    sigma = rng.uniform(0.0, 6.0, 40)
    y_true = np.stack([mean, sigma], axis=1).astype(np.float32)
    metric = metrics.EpsilonError()
    metric.update_state(y_true[:25], pred[:25].astype(np.float32))
    metric.update_state(y_true[25:], pred[25:].astype(np.float32))
    assert float(metric.result()) == pytest.approx(metrics.epsilon_error(pred, mean, sigma),
                                                   rel=1e-5)


def test_build_metrics_under_mirrored_strategy_match_numpy():
    """Compiled metrics over 2 replicas and a ragged last batch equal NumPy on predictions."""
    rng = np.random.default_rng(4)
    n = 22
    images = rng.uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)
    labels = rng.uniform(1, 5, n).astype(np.float32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = models.build_model("tiny", SCUT_FBP5500, input_size=32)
        loss, weights = heads.build_loss("er", SCUT_FBP5500)
        model.compile(loss=loss, loss_weights=weights,
                      metrics=metrics.build_metrics("attractiveness"))
    targets = {"distribution": SCUT_FBP5500.gaussian(labels, 0.3), "value": labels}
    result = model.evaluate(images, targets, batch_size=8, verbose=0, return_dict=True)
    pred = model.predict(images, batch_size=8, verbose=0)["value"]
    assert result["value_mae"] == pytest.approx(metrics.mae(pred, labels), rel=1e-4)
    assert result["value_rmse"] == pytest.approx(metrics.rmse(pred, labels), rel=1e-4)
    assert result["value_pearson"] == pytest.approx(metrics.pearson(pred, labels), abs=1e-3)


def test_build_metrics_by_task():
    assert [m.name for m in metrics.build_metrics("age")["value"]] == ["mae", "cs5"]
    assert [m.name for m in metrics.build_metrics("attractiveness")["value"]] == [
        "mae", "rmse", "pearson"]
    with pytest.raises(ValueError, match="unknown task 'beauty'"):
        metrics.build_metrics("beauty")


def test_metric_config_round_trip():
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(metrics.CumulativeScore(2.5)))
    assert isinstance(restored, metrics.CumulativeScore)
    assert (restored.theta, restored.name) == (2.5, "cs2.5")


def test_masked_accuracy_counts_known_codes_only():
    metric = metrics.MaskedAccuracy()
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]], np.float32)
    metric.update_state(np.array([0.0, 1.0, 1.0, -1.0], np.float32), probabilities)
    assert float(metric.result()) == pytest.approx(2 / 3)
    metric.update_state(np.array([-1.0], np.float32), probabilities[:1])
    assert float(metric.result()) == pytest.approx(2 / 3)
    assert sorted(metrics.build_metrics("age", ["gender_probability", "race_probability"])) == [
        "gender_probability", "race_probability", "value"]


def test_class_accuracy_over_known_codes():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    assert metrics.class_accuracy(probabilities, [0, 1, 1, -1]) == pytest.approx(2 / 3)
    assert metrics.class_accuracy(probabilities, [-1, -1, -1, -1]) is None
    with pytest.raises(ValueError, match="do not pair up"):
        metrics.class_accuracy(probabilities, [0, 1])


def test_confusion_matrix_counts_true_rows_and_predicted_columns_over_known_codes():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8], [0.4, 0.6]])
    counts = metrics.confusion_matrix(probabilities, [0, 1, 1, -1, 0])
    assert counts.tolist() == [[1, 1], [1, 1]] and counts.dtype == np.int64
    assert metrics.confusion_matrix(probabilities, [-1] * 5).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="code 2 has no column among the 2 classes"):
        metrics.confusion_matrix(probabilities, [0, 1, 2, 0, 0])

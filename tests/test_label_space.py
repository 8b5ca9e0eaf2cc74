"""Label spaces: Gaussian label distributions, encodings and the ranking unification."""

import numpy as np
import pytest

from tfdldl.label_space import (AGE, SCUT_FBP5500, LabelOutOfRangeError, LabelSpace,
                                ranking_from_distribution)


def reference_gaussian(grid, labels, sigmas):
    """Straight from the paper: p_k = exp(-(l_k - y)² / 2σ²) / Σ_j exp(-(l_j - y)² / 2σ²)."""
    grid = np.asarray(grid, np.float64)
    rows = []
    for y, s in zip(labels, sigmas):
        p = np.exp(-((grid - y) ** 2) / (2.0 * s * s))
        rows.append(p / p.sum())
    return np.array(rows)


@pytest.mark.parametrize("space", [AGE, SCUT_FBP5500, LabelSpace(-2.0, 3.0, 0.25)])
def test_gaussian_matches_reference_with_per_sample_sigma(space):
    rng = np.random.default_rng(1)
    labels = rng.uniform(space.minimum, space.maximum, 50).astype(np.float32)
    sigmas = rng.uniform(0.5, 4.0, 50) * space.step
    p = space.gaussian(labels, sigmas)
    assert p.shape == (50, space.num_classes) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p, reference_gaussian(space.grid, labels, sigmas), atol=1e-6)
    # The mode is the grid point nearest the label.
    np.testing.assert_array_equal(p.argmax(axis=1), space.nearest_index(labels))


def test_per_sample_sigma_sets_the_spread():
    labels = np.array([50.0, 50.0, 50.0])
    p = AGE.gaussian(labels, np.array([1.0, 3.0, 6.0]))
    spread = np.sqrt(p @ (AGE.grid - 50.0) ** 2)
    np.testing.assert_allclose(spread, [1.0, 3.0, 6.0], rtol=0.02)
    # A scalar σ is broadcast to every sample.
    np.testing.assert_allclose(AGE.gaussian(labels, 3.0), np.repeat(p[1:2], 3, axis=0))


def test_sigma_zero_is_a_one_hot_without_nan():
    p = SCUT_FBP5500.gaussian(np.array([1.0, 2.3, 5.0, 3.44]), np.array([0.0, 0.0, 0.0, 0.0]))
    assert np.all(np.isfinite(p))
    np.testing.assert_array_equal(p, SCUT_FBP5500.one_hot([1.0, 2.3, 5.0, 3.44]))
    assert p[3].argmax() == 24  # 3.44 -> 3.4


def test_scut_grid_has_step_point_one():
    assert SCUT_FBP5500.num_classes == 41
    np.testing.assert_allclose(SCUT_FBP5500.grid[[0, 1, 40]], [1.0, 1.1, 5.0], atol=1e-6)


@pytest.mark.parametrize("bad", [101.0, -0.5, float("nan")])
def test_label_out_of_range_names_value_and_space(bad):
    with pytest.raises(LabelOutOfRangeError) as error:
        AGE.gaussian(np.array([30.0, bad]), 2.0)
    message = str(error.value)
    assert f"label {bad:g}" in message and "age [0, 100] step 1 (K=101)" in message


def test_bad_sigma_is_refused():
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        AGE.gaussian([20.0], -1.0)


def test_ranking_encoding_counts_to_the_label():
    labels = SCUT_FBP5500.grid[[0, 7, 40]]
    ranking = SCUT_FBP5500.ranking(labels)
    assert ranking.shape == (3, 40)
    # The K-1 classifiers' prediction rule recovers the label: min + step * #(y > l_k).
    np.testing.assert_allclose(1.0 + 0.1 * ranking.sum(axis=1), labels, atol=1e-5)


def test_ranking_is_implicit_label_distribution_learning():
    """The paper's unification p_rank ≈ 1 - T·p_ld, with T the lower-triangular ones matrix."""
    space = LabelSpace(0.0, 20.0, 0.5)
    rng = np.random.default_rng(2)
    labels = space.grid[rng.integers(0, space.num_classes, 30)]
    T = space.cdf_matrix()
    assert np.array_equal(T, np.tril(T)) and np.all(np.diag(T) == 1)

    def implied_ranking(p):
        return (1.0 - p @ T.T)[:, :-1]  # the K-th entry is 1 - Σp = 0

    # σ -> 0: the label distribution is a one-hot and the identity is exact.
    p_sharp = space.gaussian(labels, 0.0)
    np.testing.assert_allclose(implied_ranking(p_sharp), space.ranking(labels), atol=1e-6)
    # σ > 0: a soft ranking, close to the hard one and with the same expectation:
    # min + step * Σ_k P(y > l_k) = Σ_k p_k l_k.
    p_soft = space.gaussian(labels, 1.0)
    soft = implied_ranking(p_soft)
    assert np.abs(soft - space.ranking(labels)).mean() < 0.05
    np.testing.assert_allclose(space.minimum + space.step * soft.sum(axis=1),
                               p_soft @ space.grid, atol=1e-4)
    # The library's helper is that same matrix product.
    np.testing.assert_allclose(ranking_from_distribution(p_soft), soft, atol=1e-6)


def test_round_trip_through_dict_and_mismatched_count():
    assert LabelSpace.from_dict(SCUT_FBP5500.to_dict()) == SCUT_FBP5500
    with pytest.raises(ValueError, match="num_classes=40"):
        LabelSpace.from_dict({**SCUT_FBP5500.to_dict(), "num_classes": 40})


def test_grid_that_is_not_whole_steps_is_refused():
    with pytest.raises(ValueError, match="not a whole number of steps"):
        LabelSpace(0.0, 1.0, 0.3)

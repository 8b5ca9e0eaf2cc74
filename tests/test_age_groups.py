"""Age-group accuracy (tfdldl.age_groups): groups, exact and one-off accuracy, bad edges."""

import numpy as np
import pytest

from tfdldl import age_groups


def test_adience_groups_are_contiguous_and_named_by_their_ages():
    assert age_groups.group_names(age_groups.ADIENCE_AGE_GROUPS) == [
        "0-3", "4-7", "8-14", "15-24", "25-37", "38-47", "48-59", "60+"]
    ages = np.array([0, 3, 3.9, 4, 14.5, 24.99, 25, 59, 60, 116])
    assert age_groups.group_index(ages, age_groups.ADIENCE_AGE_GROUPS).tolist() == [
        0, 0, 0, 1, 2, 3, 4, 6, 7, 7]
    assert age_groups.group_index(np.array([-2.0]), (0, 10)).tolist() == [0]


def test_accuracy_counts_exact_and_neighbouring_groups():
    edges = (0, 10, 20, 30)
    true = np.array([5, 5, 15, 15, 25, 35, 35, 35])
    predicted = np.array([6, 12, 15, 29, 25, 36, 21, 0.5])
    # groups      true:   0  0  1  1  2  3  3  3
    #             pred:   0  1  1  2  2  3  2  0
    result = age_groups.age_group_accuracy(true, predicted, edges)
    assert result["accuracy"] == pytest.approx(4 / 8)
    assert result["one_off_accuracy"] == pytest.approx(7 / 8)
    assert [(g["name"], g["count"], g["accuracy"]) for g in result["groups"]] == [
        ("0-9", 2, 0.5), ("10-19", 2, 0.5), ("20-29", 1, 1.0), ("30+", 3, pytest.approx(1 / 3))]
    assert result["groups"][-1]["high"] is None and result["edges"] == [0, 10, 20, 30]
    empty = age_groups.age_group_accuracy(np.array([5.0]), np.array([5.0]), (0, 10, 20))
    assert empty["groups"][1] == {"name": "10-19", "low": 10.0, "high": 20.0, "count": 0,
                                  "accuracy": None}
    assert age_groups.age_group_accuracy(np.zeros(0), np.zeros(0)) is None


def test_bad_edges_and_text_are_refused_with_the_expected_form():
    assert age_groups.parse_age_groups("0, 18,65") == (0.0, 18.0, 65.0)
    with pytest.raises(ValueError, match=r"'x' in '0,x' is not a number.*0,4,8,15"):
        age_groups.parse_age_groups("0,x")
    with pytest.raises(ValueError, match="at least two"):
        age_groups.parse_age_groups("18")
    with pytest.raises(ValueError, match="increasing"):
        age_groups.age_group_accuracy(np.ones(2), np.ones(2), (0, 20, 10))
    with pytest.raises(ValueError, match="differ in shape"):
        age_groups.age_group_accuracy(np.ones(2), np.ones(3))

"""evaluate's measures follow the data's task (the manifest's), not the label space's name."""

from tfdldl.evaluate import compute_results
from tfdldl.label_space import AGE

from test_report import _predictions


def test_the_task_chooses_bands_slice_threshold_and_age_groups():
    predictions = _predictions(count=60)
    age = compute_results(predictions, AGE, per_sample_sigma=False)
    other = compute_results(predictions, AGE, per_sample_sigma=False, task="attractiveness")
    assert (age["task"], other["task"]) == ("age", "attractiveness")
    assert [band["low"] for band in age["bands"]][:3] == [0.0, 10.0, 20.0]  # decades
    assert len(other["bands"]) == 8 and other["bands"][1]["low"] == 12.5  # 8 equal bands
    assert age["slices"]["gender"]["theta"] == 5.0  # years
    assert other["slices"]["gender"]["theta"] == (AGE.maximum - AGE.minimum) / 20
    assert age["age_groups"] is not None and other["age_groups"] is None

"""TFLite export (float16, full-integer int8) of a briefly trained tiny model, checked on a split."""

import json
import os

import numpy as np
import pytest

from data_prep.synthetic import write_tfrecord_set
from tfdldl import tflite_export
from tfdldl.label_space import AGE
from tiny_models import tiny_saved_model

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    data = write_tfrecord_set(str(root / "data"), AGE, {"train": 64, "test": 32},
                              image_size=SIZE)
    saved_model, _ = tiny_saved_model(str(root), AGE, SIZE, data, epochs=3)
    report = tflite_export.export_tflite(saved_model, data, str(root / "tflite"),
                                         representative_count=48)
    return root, report


def test_float16_model_keeps_the_mae_within_the_tolerance(exported):
    _, report = exported
    row = report["float16"]
    assert row["count"] == 32
    assert row["within_tolerance"]
    assert abs(row["mae_difference"]) <= tflite_export.DEFAULT_TOLERANCE
    assert row["max_abs_value_difference"] < 0.1  # float16 weights: tiny per-face drift


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_int8_model_is_full_integer_smaller_and_its_mae_difference_is_measured(exported):
    import tensorflow as tf

    root, report = exported
    row = report["int8"]
    assert row["bytes"] < 0.7 * report["float16"]["bytes"]
    interpreter = tf.lite.Interpreter(model_path=row["path"])
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    kinds = {detail["dtype"] for detail in interpreter.get_tensor_details()
             if "conv" in detail["name"].lower()}
    assert np.int8 in kinds and np.float32 not in kinds  # convolutions run in int8
    assert np.isfinite(row["mae_difference"])
    assert row["within_tolerance"] == (abs(row["mae_difference"]) <= row["tolerance"])
    written = json.loads((root / "tflite" / tflite_export.CHECK_NAME).read_text())
    assert written["modes"]["int8"]["mae_difference"] == pytest.approx(row["mae_difference"])
    assert os.path.getsize(row["path"]) == row["bytes"]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="float16, int8"):
        tflite_export.convert("unused", SIZE, "int4")

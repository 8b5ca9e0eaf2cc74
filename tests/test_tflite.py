"""TFLite export of a briefly trained tiny model: float16, full int8, int8 body + float head."""

import json
import os

import numpy as np
import pytest

from tfdldl import tflite_export
from tfdldl.label_space import AGE

SIZE = 32
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")


@pytest.fixture(scope="module")
def exported(trained_tiny_model, tmp_path_factory):
    """The session's trained tiny model (32 px; train 256, val 64 faces) in every mode:
    float16 and int8 converted from its SavedModel, int8_logits from its .keras file
    (which it needs). A .keras file converted in every mode, through a SavedModel exported
    on the way: tests/test_gender_export.py."""
    root = tmp_path_factory.mktemp("tflite")
    data, saved_model = trained_tiny_model["data"], trained_tiny_model["saved_model"]
    keras_path = trained_tiny_model["keras"]
    report = tflite_export.export_tflite(saved_model, data, str(root / "tflite"),
                                         ["float16", "int8"], representative_count=128)
    report.update(tflite_export.export_tflite(keras_path, data, str(root / "phone"),
                                              [tflite_export.PHONE_MODE],
                                              representative_count=128))
    return root, data, saved_model, keras_path, report


@pytest.fixture(scope="module")
def keras_model(exported):
    """The .keras model, loaded once for the tests that look inside it."""
    import keras

    return keras.saving.load_model(exported[3], compile=False)


def _interpreter(path):
    import tensorflow as tf

    return tf.lite.Interpreter(model_path=path)


def _conv_dtypes(interpreter):
    return {detail["dtype"] for detail in interpreter.get_tensor_details()
            if "conv" in detail["name"].lower()}


def test_float16_model_keeps_the_mae_within_the_tolerance(exported):
    row = exported[-1]["float16"]
    assert row["count"] == 64
    assert row["within_tolerance"]
    assert abs(row["mae_difference"]) <= tflite_export.DEFAULT_TOLERANCE
    assert row["max_abs_value_difference"] < 0.1  # float16 weights: tiny per-face drift


def test_int8_model_is_full_integer_smaller_and_its_mae_difference_is_measured(exported):
    root, _, _, _, report = exported
    row = report["int8"]
    assert row["bytes"] < 0.7 * report["float16"]["bytes"]
    interpreter = _interpreter(row["path"])
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    kinds = _conv_dtypes(interpreter)
    assert np.int8 in kinds and np.float32 not in kinds  # convolutions run in int8
    assert np.isfinite(row["mae_difference"])
    assert row["within_tolerance"] == (abs(row["mae_difference"]) <= row["tolerance"])
    written = json.loads((root / "tflite" / tflite_export.CHECK_NAME).read_text())
    assert written["split"] == "val" and written["representative_split"] == "train"
    assert written["modes"]["int8"]["mae_difference"] == pytest.approx(row["mae_difference"])
    assert os.path.getsize(row["path"]) == row["bytes"]


def test_phone_mode_is_an_int8_body_with_float_logits_and_stays_within_the_tolerance(exported):
    report = exported[-1]
    row = report[tflite_export.PHONE_MODE]
    assert row["within_tolerance"], row
    assert row["bytes"] < 0.7 * report["float16"]["bytes"]
    interpreter = _interpreter(row["path"])
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    (output,) = interpreter.get_output_details()
    assert output["dtype"] == np.float32 and list(output["shape"]) == [1, AGE.num_classes]
    kinds = _conv_dtypes(interpreter)
    assert np.int8 in kinds and np.float32 not in kinds
    # Per face, not only on average: the int8 body follows the float model closely.
    assert row["max_abs_value_difference"] < 1.0, row


def test_phone_mode_output_is_the_float_model_on_the_int8_logits(exported, keras_model):
    import keras

    _, data, _, _, report = exported
    model = keras_model
    faces = tflite_export.representative_faces(data, "val", 8, SIZE)
    logits = keras.Model(model.input, model.get_layer("logits").output).predict_on_batch(faces)
    value, distribution = tflite_export.head_from_logits(logits, AGE.grid)
    outputs = model.predict_on_batch(faces)
    np.testing.assert_allclose(value, outputs["value"], atol=1e-3)
    np.testing.assert_allclose(distribution, outputs["distribution"], atol=1e-6)
    with open(report[tflite_export.PHONE_MODE]["path"], "rb") as handle:
        runner = tflite_export.TFLitePredictor(handle.read(), AGE)
    predicted = runner.predict_images(faces)
    assert predicted["distribution"].shape == (8, AGE.num_classes)
    np.testing.assert_allclose(predicted["distribution"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(predicted["value"], predicted["distribution"] @ AGE.grid,
                               atol=1e-3)


def test_weight_rounding_correction_restores_the_channel_means(exported, keras_model):
    import keras

    data, model = exported[1], keras_model
    faces = tflite_export.representative_faces(data, "train", 32, SIZE)
    corrected = tflite_export.correct_weight_rounding_bias(model, faces)
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    for copy in (corrected, plain):  # both with the kernels int8 would store
        for layer in copy.layers:
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
                weights = layer.get_weights()
                layer.set_weights([tflite_export.quantized_kernel(weights[0])] + weights[1:])
    def mean_logits(network):
        return keras.Model(network.input, network.get_layer("logits").output
                           ).predict_on_batch(faces).mean(axis=0)

    exact = mean_logits(model)
    offset = {name: np.abs(mean_logits(copy) - exact).max()
              for name, copy in (("corrected", corrected), ("plain", plain))}
    assert offset["plain"] > 1e-3, offset  # int8 rounding does move the logits' means...
    assert offset["corrected"] < 0.05 * offset["plain"], offset  # ...and the correction cancels it


def test_quantized_kernel_uses_255_levels_per_output_channel():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
    kernel[..., 4] = 0.0  # an all-zero channel stays zero
    rounded = tflite_export.quantized_kernel(kernel)
    scale = np.abs(kernel).reshape(-1, 5).max(axis=0) / 127
    assert np.all(np.abs(rounded - kernel) <= scale / 2 + 1e-7)
    for channel in range(4):
        steps = rounded[..., channel] / scale[channel]
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
    assert not rounded[..., 4].any()


def test_phone_mode_refuses_a_saved_model_and_unknown_modes(exported, tmp_path):
    _, data, saved_model, _, _ = exported
    with pytest.raises(ValueError, match=r"int8_logits needs the Keras layers.*\.keras"):
        tflite_export.export_tflite(saved_model, data, str(tmp_path), ["int8_logits"])
    with pytest.raises(ValueError, match="float16, int8, int8_logits"):
        tflite_export.export_tflite(saved_model, data, str(tmp_path), ["int4"])
    with pytest.raises(ValueError, match="float16, int8"):
        tflite_export.convert("unused", SIZE, "int4")

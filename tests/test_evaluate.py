"""tfdldl.evaluate on real TFRecords (synthetic faces) and a real exported tiny model."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep.synthetic import write_tfrecord_set
from tfdldl import evaluate, example_schema
from tfdldl.face_align import DEFAULT_FRAMING
from tfdldl.label_space import AGE, LabelSpace
from tfdldl.manifest import ManifestError, read_manifest, write_manifest
from tiny_models import REPO_ROOT

SIZE = 32


@pytest.fixture(scope="module")
def setup(trained_tiny_model):
    """The session's trained tiny model and its data (32 px; test split: 40 faces)."""
    return trained_tiny_model


def _direct(saved_model, data, split="test", key="value"):
    """Labels, σ, gender codes and the flip-averaged output ``key``, computed without
    tfdldl's reader or predictor."""
    loaded = tf.saved_model.load(saved_model)
    predict = loaded.signatures["predict_images"]
    labels, sigmas, genders, images = [], [], [], []
    for record in tf.data.TFRecordDataset(read_manifest(data).shards(split)):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature
        labels.append(feature[example_schema.LABEL].float_list.value[0])
        sigmas.append(feature[example_schema.SIGMA].float_list.value[0])
        genders.append(feature[example_schema.GENDER].int64_list.value[0])
        jpeg = feature[example_schema.IMAGE].bytes_list.value[0]
        images.append(tf.io.decode_jpeg(  # as training decodes
            jpeg, channels=3, dct_method="INTEGER_ACCURATE").numpy())
    images = np.stack(images).astype(np.float32)
    plain = predict(images=tf.constant(images))[key].numpy()
    mirrored = predict(images=tf.constant(images[:, :, ::-1].copy()))[key].numpy()
    return np.array(labels), np.array(sigmas), np.array(genders), 0.5 * (plain + mirrored)


def test_results_json_matches_a_direct_computation(setup, tmp_path):
    out = tmp_path / "eval"
    results = evaluate.evaluate(setup["saved_model"], setup["data"], "test", str(out),
                                report=False)
    written = json.loads((out / evaluate.RESULTS_NAME).read_text())
    assert written == json.loads(json.dumps(results))
    for key in ("count", "mae", "bias", "rmse", "pearson", "epsilon_error", "cs", "cs_at",
                "bands", "label_space", "flip_averaged", "mean_predicted_stddev"):
        assert key in written, key

    true, _, _, value = _direct(setup["saved_model"], setup["data"])
    error = value - true
    assert written["count"] == len(true) == 40
    assert written["mae"] == pytest.approx(np.abs(error).mean(), abs=1e-3)
    assert written["bias"] == pytest.approx(error.mean(), abs=1e-3)
    assert written["rmse"] == pytest.approx(np.sqrt((error ** 2).mean()), abs=1e-3)
    assert written["pearson"] == pytest.approx(np.corrcoef(value, true)[0, 1], abs=1e-3)
    assert written["cs_at"]["5"] == pytest.approx(np.mean(np.abs(error) <= 5))
    assert written["epsilon_error"] is None  # synthetic data has a constant σ
    # an age-only model: no categorical head's results, none printed
    assert written["categorical_heads"] == [] and "gender_accuracy" not in written
    assert "gender accuracy" not in evaluate.summary(written)
    assert sum(band["count"] for band in written["bands"]) == 40
    decade = [band for band in written["bands"] if band["low"] == 20][0]
    inside = (true >= 20) & (true < 30)
    assert decade["count"] == inside.sum()
    if inside.any():
        assert decade["mae"] == pytest.approx(np.abs(error[inside]).mean(), abs=1e-3)


def test_a_gender_model_reports_accuracy_confusion_and_age_per_gender(
        setup, trained_tiny_gender_model):
    """Accuracy and the 2x2 confusion matrix (rows true, columns predicted, the model's
    class names) equal a direct count from the SavedModel; the age slices by gender show.
    The model: the session's tiny age+gender model, trained 1 epoch on this data."""
    model = trained_tiny_gender_model[0]
    results = evaluate.evaluate(model, setup["data"], "test")
    _, _, genders, probability = _direct(model, setup["data"], key="gender_probability")
    predicted = np.argmax(probability, axis=-1)
    counts = [[int(np.sum((genders == true) & (predicted == guess))) for guess in (0, 1)]
              for true in (0, 1)]
    assert results["gender_confusion"] == {"class_names": ["man", "woman"], "counts": counts,
                                           "unknown": 0}
    assert results["gender_accuracy"] == pytest.approx(np.mean(predicted == genders))
    assert results["categorical_heads"] == ["gender"]
    assert [group["count"] for group in results["slices"]["gender"]["groups"]] == [20, 20]
    text = evaluate.summary(results)
    assert f"gender accuracy {100 * results['gender_accuracy']:.1f}% (n=40 known, 0 unknown)" \
        in text
    assert f"  man: {counts[0][0]}  {counts[0][1]}" in text
    assert f"  woman: {counts[1][0]}  {counts[1][1]}" in text
    assert "by gender: man (n=20) MAE" in text


def test_epsilon_error_uses_each_faces_sigma_when_the_data_has_one(setup, tmp_path):
    data = str(tmp_path / "data")  # the session's data stays as it is
    shutil.copytree(setup["data"], data)
    write_manifest(data, dict(read_manifest(data).raw, sigma={"policy": "per_sample"}))
    results = evaluate.evaluate(setup["saved_model"], data, "test")
    true, sigma, _, value = _direct(setup["saved_model"], data)
    expected = np.mean(1.0 - np.exp(-(value - true) ** 2 / (2.0 * sigma ** 2)))
    assert results["epsilon_error"] == pytest.approx(expected, abs=1e-4)


def test_keras_file_and_saved_model_agree_and_no_flip_differs(setup):
    from_saved = evaluate.evaluate(setup["saved_model"], setup["data"], "test", flip=False)
    from_keras = evaluate.evaluate(setup["keras"], setup["data"], "test", flip=False)
    assert from_keras["mae"] == pytest.approx(from_saved["mae"], abs=1e-3)
    assert from_saved["flip_averaged"] is False


def test_label_space_mismatch_is_refused_in_python_and_on_the_command_line(setup, tmp_path):
    other = LabelSpace(0.0, 50.0, 1.0, name="age")
    data = write_tfrecord_set(str(tmp_path / "other"), other, {"test": 4}, image_size=SIZE)
    with pytest.raises(ManifestError, match="label space"):
        evaluate.evaluate(setup["saved_model"], data, "test")

    done = subprocess.run(
        [sys.executable, "-m", "tfdldl.evaluate", "--model", setup["saved_model"],
         "--data", data, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 2
    assert "age [0, 50] step 1 (K=51)" in done.stderr
    assert "age [0, 100] step 1 (K=101)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "out" / evaluate.RESULTS_NAME)


def test_data_framed_otherwise_than_the_model_is_refused(setup, tmp_path):
    """The model was trained on legacy-framed faces (a manifest without a framing); faces
    aligned with the new framing would get answers for another field of view."""
    data = write_tfrecord_set(str(tmp_path / "framed"), AGE, {"test": 4}, image_size=SIZE)
    with open(os.path.join(data, example_schema.MANIFEST_NAME), encoding="utf-8") as handle:
        raw = json.load(handle)
    raw["alignment"] = {"framing": DEFAULT_FRAMING.to_dict()}
    write_manifest(data, raw)
    with pytest.raises(ManifestError, match="framing scale 1.25.*trained with framing "
                                            "scale 0.8.*Rebuild the data"):
        evaluate.evaluate(setup["saved_model"], data, "test")


def test_command_line_writes_results_and_report(setup, tmp_path):
    out = tmp_path / "eval"
    done = subprocess.run(
        [sys.executable, "-m", "tfdldl.evaluate", "--model", setup["saved_model"],
         "--data", setup["data"], "--split", "test", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MAE" in done.stdout
    # the synthetic records carry genders and "tone" groups: both are sliced
    assert "by gender: male (n=20)" in done.stdout and "by tone: light" in done.stdout
    assert "intervals, uncalibrated: 50% holds" in done.stdout
    for name in ("results.json", "report.html", "scatter.png", "cs_curve.png",
                 "error_by_band.png", "error_by_group.png", "best_worst_faces.png"):
        assert (out / name).stat().st_size > 0, name


def test_calibration_is_fitted_stored_and_applied(setup, tmp_path):
    from tfdldl import calibration
    from tfdldl.inference import load_predictor

    model = tmp_path / "tiny"
    shutil.copytree(os.path.dirname(setup["saved_model"]), model)
    results = evaluate.evaluate(str(model), setup["data"], "val", calibrate_model=True)
    fitted = results["calibration"]
    assert fitted["nll"]["after"] <= fitted["nll"]["before"]
    assert fitted["fitted_on"] == {"data": setup["data"], "split": "val", "count": 64,
                                   "flip_averaged": True}
    version = str(model / "1")
    assert load_predictor(str(model)).temperature == fitted["temperature"] != 1.0
    assert calibration.read_temperature(version) == fitted["temperature"]
    # evaluating again applies the stored temperature: the same calibrated coverage
    again = evaluate.evaluate(version, setup["data"], "val")
    assert again["intervals"]["temperature"] == fitted["temperature"]
    assert again["intervals"]["calibrated"] == results["intervals"]["calibrated"]
    with pytest.raises(evaluate.CalibrationError, match="not a SavedModel folder"):
        evaluate.evaluate(setup["keras"], setup["data"], "val", calibrate_model=True)

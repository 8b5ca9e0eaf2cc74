"""A second categorical head needs only config: age + gender + race (the records' group
codes) trained a few steps by tfdldl.train on real TFRecords (conftest's trained_race_run),
then served, evaluated and predicted under the race head's own names."""

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfdldl import evaluate, heads, model_setup, predict, tfrecord_reader
from tfdldl.experiment import load_experiment
from tfdldl.inference import aligner_for, load_predictor, predict_flip_averaged
from tfdldl.label_space import AGE
from tfdldl.manifest import ManifestError, read_manifest
from tfdldl.predict_inputs import Frame
from tfdldl.signatures import SIGNATURES
from tiny_models import REPO_ROOT

RACES = ["white", "black", "asian", "indian", "others"]


def test_the_race_head_is_trained_logged_and_served_in_every_signature(trained_race_run):
    data, root, results = trained_race_run
    with open(root / "run" / "training_log.csv") as handle:
        row = next(csv.DictReader(handle))
    assert 0.0 <= float(row["val_race_probability_accuracy"]) <= 1.0
    assert float(row["race_probability_loss"]) > 0.0
    predictor = load_predictor(results["saved_model"])
    assert predictor.class_names == {"gender_probability": ["male", "female"],
                                     "race_probability": RACES}
    assert predictor.class_attributes == {"gender_probability": "gender",
                                          "race_probability": "group"}
    faces = tfrecord_reader.read_split(read_manifest(data), "test")
    pixels = evaluate.decode_jpegs(faces.jpegs[:3])
    loaded = tf.saved_model.load(results["saved_model"])
    for name in SIGNATURES:
        given = pixels if name == "predict_images" else faces.jpegs[:3]
        outputs = loaded.signatures[name](images=tf.constant(given))
        race = outputs["race_probability"].numpy()
        assert race.shape == (3, 5), name
        np.testing.assert_allclose(race.sum(axis=1), 1.0, atol=1e-5, err_msg=name)
        assert outputs["gender_probability"].shape == (3, 2), name


def test_evaluate_reports_race_accuracy_confusion_and_mae_per_race(trained_race_run):
    data, _, results = trained_race_run
    test = results["test"]  # train's own evaluation of the exported model
    assert test["categorical_heads"] == ["gender", "race"]
    confusion = test["race_confusion"]
    assert confusion["class_names"] == RACES and confusion["unknown"] == 0
    assert len(confusion["counts"]) == 5 and sum(map(sum, confusion["counts"])) == 8
    hits = sum(confusion["counts"][code][code] for code in range(5))
    assert test["race_accuracy"] == pytest.approx(hits / 8)
    # MAE per race: the group codes' slice, named by the race head (not the data's "tone")
    assert [group["name"] for group in test["slices"]["race"]["groups"]] == RACES[:3]
    assert "tone" not in test["slices"] and "gender" in test["slices"]
    assert f"race accuracy {100 * test['race_accuracy']:.1f}% (n=8 known" in \
        evaluate.summary(test)
    again = evaluate.evaluate(results["saved_model"], data, "test")
    assert again["race_confusion"] == confusion


def test_evaluate_refuses_data_with_more_groups_than_the_race_head_has_classes(
        trained_race_run, tmp_path):
    # On data whose manifest names six groups, a five-class race head was evaluated without
    # a word; a face of the sixth group then stopped evaluate after predicting with a
    # ValueError traceback from the confusion matrix ("code 5 has no column among the 5
    # classes").
    data, _, results = trained_race_run
    wider = tmp_path / "wider"
    shutil.copytree(data, wider)
    manifest = json.loads((wider / "manifest.json").read_text())
    manifest["group"] = {"name": "race", "labels": [*RACES, "unknown_sixth"]}
    (wider / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"has race codes 0..5 \(white, .*unknown_sixth\), "
                       r"but the race head of the model .* has only 5 classes \(white, black, "
                       r"asian, indian, others\); evaluate on data whose groups the model "
                       r"knows"):
        evaluate.evaluate(results["saved_model"], str(wider), "test")


def test_prediction_rows_carry_race_and_its_confidence(trained_race_run):
    data, _, results = trained_race_run
    predictor = load_predictor(results["saved_model"])
    faces = tfrecord_reader.read_split(read_manifest(data), "test")
    pixels = evaluate.decode_jpegs(faces.jpegs[:2])
    frames = [Frame(f"face{i}", image.astype(np.uint8)) for i, image in enumerate(pixels)]
    rows = [row for per_frame in predict.predict_frames(frames, predictor,
                                                        aligner_for(predictor), aligned=True)
            for row in per_frame]
    expected = predict_flip_averaged(predictor, pixels)["race_probability"]
    for row, probabilities in zip(rows, expected):
        assert row.classes["race"] == (RACES[int(np.argmax(probabilities))],
                                       pytest.approx(float(probabilities.max()), abs=1e-4))
        assert row.classes["gender"][0] in ("male", "female")
    table = io.StringIO()
    writer = predict.RowWriter(table, "csv", categorical=["gender", "race"])
    for row in rows:
        writer.write(row)
    written = list(csv.DictReader(table.getvalue().splitlines()))
    assert list(written[0])[-5:] == ["gender", "gender_confidence", "race", "race_confidence",
                                     "message"]
    assert [(line["race"], float(line["race_confidence"])) for line in written] == [
        row.classes["race"] for row in rows]


def test_the_shipped_config_builds_the_three_heads():
    experiment = load_experiment(os.path.join(REPO_ROOT, "configs",
                                              "utkface_tiny_age_gender_race.yaml"))
    model = model_setup.build_network(experiment, AGE)
    assert heads.class_names(model) == {"gender_probability": ["male", "female"],
                                        "race_probability": RACES}
    assert heads.class_attributes(model) == {"gender_probability": "gender",
                                             "race_probability": "group"}
    assert {"gender_embedding", "race_logits"} <= {layer.name for layer in model.layers}

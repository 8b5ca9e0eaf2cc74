"""Learned uncertainty weighting (tfdldl.loss_weighting): the exact form, its gradient reaching
the log-variances on one device and on 2 replicas (on JAX/PyTorch: tests/backend_parity.py,
run by tests/test_backend_agnostic.py), the run's log, and the .keras round trip."""

import csv
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from data_prep.synthetic import write_tfrecord_set
import backend_parity
from tfdldl import inference, loss_weighting, train
from tfdldl.experiment import load_experiment

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, SPACE = backend_parity.SIZE, backend_parity.WEIGHTING_SPACE
LEARNING_RATE = backend_parity.LEARNING_RATE


def test_one_step_follows_the_stated_form_on_one_device_and_on_two_replicas():
    """Total = Σ exp(-s_i)·L_i + s_i: at s = 0 the loss is L_age + L_gender and one SGD step
    moves s_i by -lr·(1 - L_i); 2 replicas (synchronised BatchNorm) take the same step."""
    images, targets = backend_parity.weighting_batch()
    model = backend_parity.weighting_model()
    expected = backend_parity.head_losses(model, images, targets)
    assert float(model.compute_loss(images, targets, model(images, training=True))) == \
        pytest.approx(expected.sum(), rel=1e-5)
    model.fit(images, targets, batch_size=len(images), epochs=1, verbose=0, shuffle=False)
    learned = loss_weighting.layer_of(model)
    s = keras.ops.convert_to_numpy(learned.log_variance)
    np.testing.assert_allclose(s, -LEARNING_RATE * (1.0 - expected), rtol=1e-4, atol=1e-6)
    assert learned.weights_by_head() == pytest.approx(dict(zip(["age", "gender"], np.exp(-s))))

    # 2 replicas in a fresh process: in one process with other mirrored runs (the suite),
    # synchronised BatchNorm's collective keys can collide between strategies.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", TWO_REPLICAS, os.path.join(REPO_ROOT, "tests")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    replicated = np.array([float(v) for v in done.stdout.split()[-2:]])
    np.testing.assert_allclose(replicated, s, rtol=1e-4, atol=1e-6)


TWO_REPLICAS = """
import sys
sys.path.insert(0, sys.argv[1])
import conftest  # two logical CPU devices, before TensorFlow starts
import keras
import tensorflow as tf
from tfdldl import distribute, loss_weighting
from backend_parity import weighting_batch, weighting_model
images, targets = weighting_batch()
initial = weighting_model().get_weights()
strategy = distribute.make_strategy("mirrored")
assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
with strategy.scope():
    replicated = weighting_model()
replicated.set_weights(initial)
with distribute.synchronized_batch_norm(replicated, True):
    replicated.fit(tf.data.Dataset.from_tensors((images, targets)), epochs=1, verbose=0)
learned = keras.ops.convert_to_numpy(loss_weighting.layer_of(replicated).log_variance)
print(" ".join(repr(float(value)) for value in learned))
"""


def test_a_reloaded_keras_file_keeps_the_learned_weights_in_its_loss(tmp_path):
    images, targets = backend_parity.weighting_batch()
    model = backend_parity.weighting_model()
    model.fit(images, targets, batch_size=len(images), epochs=2, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.loss["value"]).__name__ == "UncertaintyWeighted"
    np.testing.assert_allclose(reloaded.evaluate(images, targets, verbose=0, return_dict=True)
                               ["loss"], model.evaluate(images, targets, verbose=0,
                                                        return_dict=True)["loss"], rtol=1e-5)
    assert loss_weighting.layer_of(reloaded).weights_by_head() == pytest.approx(
        loss_weighting.layer_of(model).weights_by_head())


def test_a_run_logs_the_learned_weights(tmp_path):
    data = write_tfrecord_set(str(tmp_path / "data"), SPACE, {"train": 16, "val": 8},
                              image_size=SIZE)
    path = tmp_path / "run.yaml"
    path.write_text(f"""
name: run
output_dir: {tmp_path / 'run'}
data: {{tfrecords: {data}, test_split: ""}}
model: {{arch: tiny, input_size: {SIZE}, width: 0.25}}
heads: [{{name: age, kind: distribution}}, {{name: sex, kind: categorical, attribute: gender, names: [m, f]}}]
loss_weighting: uncertainty
train: {{epochs: 2, batch_size: 8, verbose: 0}}
export: {{saved_models_dir: {tmp_path / 'saved_models'}}}
""")
    results = train.train(load_experiment(str(path)))
    with open(tmp_path / "run" / "training_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for key in ("loss_weight_age", "loss_weight_sex"):
        values = [float(row[key]) for row in rows]
        assert all(np.isfinite(values)) and values[0] != 1.0 and values[1] != values[0], key
    assert "learned loss weights age" in (tmp_path / "run" / "train.log").read_text()
    # The weights are the training's: the SavedModel answers with the usual outputs only
    # (the categorical head's named after it).
    outputs = inference.load_predictor(results["saved_model"]).predict_images(
        np.zeros((2, SIZE, SIZE, 3), np.float32))
    assert sorted(outputs) == ["distribution", "sex_probability", "stddev", "value"]

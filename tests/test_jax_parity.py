"""Weights trained by tfdldl.backend_train under JAX load into TensorFlow and give the same outputs.

A subprocess with KERAS_BACKEND=jax trains a tiny model for a few steps on synthetic
TFRecords (the whole GPU path: TF-free reader, host pipeline, model.fit on JAX) and
records its forward pass on fixed images. This process (TensorFlow) then loads the
weights file it wrote into the TensorFlow model, exports the run as a SavedModel with
``--export_from``, and both must reproduce the JAX outputs within 1e-4.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from data_prep import synthetic
from tfdldl import backend_train, export
from tfdldl.label_space import AGE

SIZE = 32
TOLERANCE = 1e-4
# JAX compiles every eager op; without XLA's backend optimisations that takes half the
# time, and the numbers still match.
FAST_XLA = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}

EXPERIMENT = f"""
name: parity
seed: 3
data: {{tfrecords: TFRECORDS}}
model: {{arch: tiny, input_size: {SIZE}, width: 0.5}}
train: {{epochs: 2, batch_size: 8, steps_per_epoch: 2, verbose: 0}}
"""

# Runs in the other backend's process: argv = run folder, output .npz.
FORWARD = f"""
import sys
import numpy as np
from tfdldl.backend_train import load_run_model
model = load_run_model(sys.argv[1])
images = np.random.default_rng(11).uniform(0, 255, (6, {SIZE}, {SIZE}, 3)).astype("float32")
outputs = model.predict(images, verbose=0)
np.savez(sys.argv[2], images=images, **{{k: np.asarray(v) for k, v in outputs.items()}})
"""


def _jax_installed():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed (pip install jax jaxlib); .ci/run installs it, so "
                    "CI always runs this check")


# Runs in a JAX process: argv = run folder, output .npz, backend_train's flags. The
# command line trains, then the same process records the forward pass (one JAX start-up).
TRAIN_THEN_FORWARD = """
import runpy
import sys
run_dir, forward = sys.argv[1:3]
sys.argv = ["tfdldl.backend_train", *sys.argv[3:]]
try:
    runpy.run_module("tfdldl.backend_train", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    if stop.code:
        raise
sys.argv = ["forward", run_dir, forward]
""" + FORWARD


def _run(backend, code_or_args, env_extra=None, timeout=240):
    env = {**os.environ, "KERAS_BACKEND": backend, **(env_extra or {})}
    command = [sys.executable, *code_or_args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """A run folder trained under JAX, and the JAX forward pass of its weights."""
    _jax_installed()
    root = tmp_path_factory.mktemp("jax_run")
    data = synthetic.write_tfrecord_set(str(root / "data"), AGE,
                                        {"train": 24, "val": 8, "test": 8}, image_size=SIZE)
    config = root / "parity.yaml"
    config.write_text(EXPERIMENT.replace("TFRECORDS", data))
    run_dir, forward = str(root / "run"), str(root / "jax_forward.npz")
    _run("jax", ["-c", TRAIN_THEN_FORWARD, run_dir, forward, f"--config={config}",
                 "--workers=1", f"--set=output_dir={run_dir}",
                 f"--set=export.saved_models_dir={root / 'saved_models'}"], FAST_XLA,
         timeout=480)
    return run_dir, dict(np.load(forward))


def test_jax_run_folder_is_complete(jax_run):
    run_dir, _ = jax_run
    results = json.load(open(os.path.join(run_dir, backend_train.RESULTS)))
    assert results["backend"] == "jax" and results["epochs_done"] == 2
    assert set(results) >= {"val", "test", "timing"}
    assert results["test"]["count"] == 8 and np.isfinite(results["test"]["mae_flip_averaged"])
    timing = results["timing"]
    assert timing["steady"]["images_per_second"] > 0
    assert 0 <= timing["steady"]["data_wait_share"] <= 1
    assert len(timing["per_epoch"]) == 2
    assert os.path.getsize(os.path.join(run_dir, backend_train.WEIGHTS)) < os.path.getsize(
        os.path.join(run_dir, backend_train.LAST_WEIGHTS)) / 2  # no optimizer state


def _assert_close(ours, theirs, names=("distribution", "value")):
    for name in names:
        difference = np.abs(np.asarray(ours[name], np.float64) - theirs[name]).max()
        assert difference <= TOLERANCE, f"{name} differs by {difference}"


def test_tensorflow_forward_of_jax_weights_agrees(jax_run):
    assert keras.backend.backend() == "tensorflow"
    run_dir, reference = jax_run
    model = backend_train.load_run_model(run_dir)
    outputs = {k: keras.ops.convert_to_numpy(v)
               for k, v in model(reference["images"], training=False).items()}
    _assert_close(outputs, reference)


def test_exported_saved_model_agrees_with_jax(jax_run, tmp_path):
    run_dir, reference = jax_run
    saved = backend_train.export_run(run_dir, [f"export.saved_models_dir={tmp_path}"])
    assert saved == os.path.join(str(tmp_path), "parity", "1")
    assert os.path.exists(os.path.join(run_dir, backend_train.KERAS_MODEL))
    serving = export.load_serving(saved)
    assert serving.label_space.same_grid(AGE)
    _assert_close(serving.predict_images(reference["images"]), reference)
    with pytest.raises(FileExistsError):  # a second export must choose a new version
        backend_train.export_run(run_dir, [f"export.saved_models_dir={tmp_path}"])


def test_torch_forward_of_jax_weights_agrees(jax_run, tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed (pip install torch); .ci/run installs it")
    run_dir, reference = jax_run
    forward = str(tmp_path / "torch_forward.npz")
    _run("torch", ["-c", FORWARD, run_dir, forward])
    _assert_close(dict(np.load(forward)), reference)


def test_export_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(backend_train.RunFolderError, match="lacks .*model.weights.h5"):
        backend_train.export_run(str(tmp_path))

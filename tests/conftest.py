"""Shared test set-up: quiet TensorFlow with the commands' CPU kernels, two logical CPU
devices, the ../shared data, and the tiny models that several test files use (built once
per session: exports and training are the suite's slowest steps)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from tfdldl.cli import use_onednn  # noqa: E402

# TensorFlow in the test process runs the kernels the commands it starts run (oneDNN's,
# unless TF_ENABLE_ONEDNN_OPTS says otherwise), so in-process and command answers compare.
use_onednn()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets")


def _split_cpu_into_two_logical_devices():
    """MirroredStrategy tests need 2 replicas; must run before TensorFlow initialises."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:  # already initialised by an earlier import: keep what exists
        pass


_split_cpu_into_two_logical_devices()


@pytest.fixture(scope="session")
def shared_datasets():
    """Path of ../shared/datasets; skips the test when it is absent (a user's machine)."""
    if not os.path.isdir(SHARED_DATASETS):
        pytest.skip(f"{SHARED_DATASETS} is absent: this test needs the project's shared data")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def utkface_dir(shared_datasets):
    """Path of the shared UTKFace images folder (skips when absent)."""
    path = os.path.join(shared_datasets, "utkface", "images")
    if not os.path.isdir(path):
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def untrained_tiny_model(tmp_path_factory):
    """An untrained TinyAgeNet (age 0..100, 64 px input): (SavedModel version folder, .keras
    path). Shared by several files: copy it before writing into it."""
    from tiny_models import tiny_saved_model
    from tfdldl.label_space import AGE

    return tiny_saved_model(str(tmp_path_factory.mktemp("untrained_tiny")), AGE, 64)


@pytest.fixture(scope="session")
def trained_tiny_model(tmp_path_factory):
    """TinyAgeNet (age 0..100, 32 px) trained 6 epochs on synthetic TFRecords (train 256,
    val 64, test 40 faces, 32 px): {"data", "saved_model", "keras"} paths. Shared by
    several files: copy the data or the model before writing into them."""
    from data_prep.synthetic import write_tfrecord_set
    from tiny_models import tiny_saved_model
    from tfdldl.label_space import AGE

    root = tmp_path_factory.mktemp("trained_tiny")
    data = write_tfrecord_set(str(root / "data"), AGE, {"train": 256, "val": 64, "test": 40},
                              image_size=32)
    saved_model, keras_path = tiny_saved_model(str(root), AGE, 32, data, epochs=6)
    return {"data": data, "saved_model": saved_model, "keras": keras_path}


@pytest.fixture(scope="session")
def trained_tiny_gender_model(tmp_path_factory, trained_tiny_model):
    """TinyAgeNet (age 0..100, 32 px) with the gender head (man, woman), trained 1 epoch
    on the data of ``trained_tiny_model``: (SavedModel version folder, .keras path).
    Shared by several files: copy it before writing into it."""
    from tiny_models import tiny_saved_model
    from tfdldl.heads import CategoricalHead
    from tfdldl.label_space import AGE

    return tiny_saved_model(str(tmp_path_factory.mktemp("trained_tiny_gender")), AGE, 32,
                            trained_tiny_model["data"], epochs=1,
                            categorical=(CategoricalHead("gender", ("man", "woman")),))


@pytest.fixture(scope="session")
def trained_race_run(tmp_path_factory):
    """tfdldl.train, 1 epoch of 2 steps, on a config that only lists the heads: age +
    gender (fed into age) + race (the records' group codes), attention, 32 px, on synthetic
    TFRecords (train 64, val 24, test 8 faces): (data folder, root, train's results); the
    run folder is root/run (its model.keras), the SavedModel results["saved_model"].
    Shared by tests/test_categorical_heads.py and tests/test_gender_export.py: copy before
    writing into it."""
    from data_prep.synthetic import write_tfrecord_set
    from tfdldl import train
    from tfdldl.experiment import load_experiment
    from tfdldl.label_space import AGE

    root = tmp_path_factory.mktemp("race")
    races = ["white", "black", "asian", "indian", "others"]
    # The synthetic records' group codes are 0, 1, 2 (three tones): race codes 0..2.
    data = write_tfrecord_set(str(root / "data"), AGE, {"train": 64, "val": 24, "test": 8},
                              image_size=32)
    path = root / "race.yaml"
    path.write_text(f"""
name: race
output_dir: {root / 'run'}
data: {{tfrecords: {data}}}
model: {{arch: tiny, input_size: 32, width: 0.25, into_label: gender, attention: true}}
heads:
  - {{name: age, kind: distribution}}
  - {{name: gender, kind: categorical, attribute: gender, names: [male, female]}}
  - {{name: race, kind: categorical, attribute: group, names: {races}, weight: 0.5}}
train: {{epochs: 1, steps_per_epoch: 2, batch_size: 8, verbose: 0}}
export: {{saved_models_dir: {root / 'saved_models'}}}
""")
    return data, root, train.train(load_experiment(str(path)))

"""Shared test set-up: quiet TensorFlow, two logical CPU devices, the ../shared data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

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

"""Kill a real training process mid-epoch (SIGKILL), start it again: it resumes at the
last backup and finishes the planned epochs, with each epoch logged once and the same
final weights as a run that was never interrupted (deterministic mode)."""

import csv
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np

from data_prep.synthetic import write_tfrecord_set
from tfdldl import models  # noqa: F401  (registers the custom layers for loading)
from tfdldl.label_space import LabelSpace
from tfdldl.resume import BACKUP_NAME

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = LabelSpace(0.0, 40.0, 1.0, name="age")
# 48 records / batch 8; the kill lands in the last epoch, after a finished one.
STEPS_PER_EPOCH, EPOCHS = 6, 2


def _config(tmp_path, data, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: {name}
deterministic: true
output_dir: {tmp_path / name}
data: {{tfrecords: {data}, test_split: ''}}
model: {{arch: tiny, input_size: 32, width: 0.5}}
train: {{epochs: {EPOCHS}, batch_size: 8, backup_every_steps: 1, verbose: 0}}
export: {{enabled: false}}
""")
    return str(path)


def _start(config):
    return subprocess.Popen([sys.executable, "-m", "tfdldl.train", "--config", config],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def _backup_step(path):
    """The optimizer step stored in a backup file (None while there is none)."""
    if not os.path.exists(path):
        return None
    try:
        with h5py.File(path, "r") as handle:
            group = handle["optimizer"]["vars"]
            scalars = [group[key][()] for key in group if group[key].shape == ()]
            return int(next(value for value in scalars if np.issubdtype(value.dtype,
                                                                         np.integer)))
    except (OSError, KeyError, StopIteration):
        return None  # replaced while we read it: ask again


def test_killed_run_resumes_mid_epoch_and_finishes_as_if_never_killed(tmp_path):
    data = write_tfrecord_set(str(tmp_path / "data"), SPACE, {"train": 48, "val": 8},
                              image_size=32)  # no test split: its evaluation checks nothing here
    reference = _start(_config(tmp_path, data, "reference"))
    victim = _start(_config(tmp_path, data, "victim"))
    backup = tmp_path / "victim" / "backup" / BACKUP_NAME
    deadline = time.time() + 240
    step = None
    while time.time() < deadline and victim.poll() is None:
        step = _backup_step(backup)
        if step is not None and step > STEPS_PER_EPOCH and step % STEPS_PER_EPOCH:
            victim.send_signal(signal.SIGKILL)  # mid-epoch 1, no chance to clean up
            break
        time.sleep(0.05)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, victim.stdout.read()[-3000:]
    assert not (tmp_path / "victim" / "results.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "tfdldl.train", "--config",
                              _config(tmp_path, data, "victim")], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=240,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    reference_output = reference.communicate(timeout=240)[0]
    assert reference.returncode == 0, reference_output[-3000:]

    log = (tmp_path / "victim" / "train.log").read_text()
    match = re.search(r"resuming from the backup at step (\d+) of (\d+)", log)
    assert match, log
    restored = int(match.group(1))
    assert restored >= step and int(match.group(2)) == STEPS_PER_EPOCH * EPOCHS
    assert restored % STEPS_PER_EPOCH, "the kill should have landed mid-epoch"
    with open(tmp_path / "victim" / "training_log.csv") as handle:
        epochs = [row["epoch"] for row in csv.DictReader(handle)]
    assert epochs == ["0", "1"]  # each epoch once: none lost, none repeated

    finished = keras.saving.load_model(tmp_path / "victim" / "model.keras", compile=False)
    never_killed = keras.saving.load_model(tmp_path / "reference" / "model.keras",
                                           compile=False)
    for a, b in zip(finished.get_weights(), never_killed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

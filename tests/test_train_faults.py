"""Training runs killed at their most fragile moments, rerun, and runs that must be refused.

A kill is simulated in-process by raising a BaseException from inside the step that a
SIGKILL would interrupt: no code of the run gets to clean up (the exception passes every
``except Exception``), so the run folder is left exactly as a kill at that point leaves it.
The model is a tiny TinyAgeNet on synthetic TFRecords without a test split, so each run
takes seconds.
"""

import csv
import json
import math
import os
import stat

import numpy as np
import pytest

from data_prep.synthetic import write_tfrecord_set
from tfdldl import callbacks, export, resume, safe_io, train
from tfdldl.config import save_config
from tfdldl.experiment import load_experiment
from tfdldl.label_space import LabelSpace
from tfdldl.manifest import ManifestError

SPACE = LabelSpace(0.0, 40.0, 1.0, name="age")


class Killed(BaseException):
    """Stands in for SIGKILL: nothing catches it."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tfrecord_set(str(tmp_path_factory.mktemp("faults") / "data"), SPACE,
                              {"train": 32, "val": 8, "test": 8}, image_size=32)


def _experiment(tmp_path, data, overrides=(), export_enabled=False):
    path = tmp_path / "run.yaml"
    path.write_text(f"""
name: run
output_dir: {tmp_path / 'run'}
model: {{arch: tiny, input_size: 32, width: 0.25}}
data: {{tfrecords: {data}, test_split: ''}}
train: {{epochs: 2, batch_size: 8, backup_every_steps: 2, verbose: 0}}
export: {{enabled: {str(export_enabled).lower()}, saved_models_dir: {tmp_path / 'saved'}}}
""")
    return load_experiment(str(path), list(overrides))


def _kill_at_step(monkeypatch, step):
    """Kill the run right after the backup callback has handled global step ``step``."""
    original = resume.StepBackup.on_train_batch_end

    def on_train_batch_end(self, batch, logs=None):
        original(self, batch, logs)
        if int(self.model.optimizer.iterations.numpy()) == step:
            raise Killed(f"killed at step {step}")

    monkeypatch.setattr(resume.StepBackup, "on_train_batch_end", on_train_batch_end)


def _kill_on_call(monkeypatch, owner, name):
    """Kill the run when ``owner.name`` is first called (the call does not happen)."""
    def killed(*args, **kwargs):
        raise Killed(f"killed in {name}")

    monkeypatch.setattr(owner, name, killed)


def _epochs(run):
    with open(run / "training_log.csv", newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def killed_in_epoch_0(tmp_path_factory, data):
    """A run folder as a kill at step 3 of epoch 0 leaves it: a backup of step 2, and the
    CSV log that Keras' CSVLogger opened but has not written a row into."""
    root = tmp_path_factory.mktemp("killed")
    patch = pytest.MonkeyPatch()
    _kill_at_step(patch, 3)
    try:
        with pytest.raises(Killed):
            train.train(_experiment(root, data))
    finally:
        patch.undo()
    run = root / "run"
    assert (run / "training_log.csv").read_text() == ""
    assert (run / "backup" / resume.BACKUP_NAME).exists()
    return root


def _copy(killed, tmp_path):
    """A private copy of a killed run folder, as if it had been killed under ``tmp_path``."""
    import shutil

    shutil.copytree(killed / "run", tmp_path / "run", symlinks=True)
    return tmp_path / "run"


def test_a_kill_in_the_first_epoch_with_a_torn_best_file_resumes_and_finishes(
        killed_in_epoch_0, tmp_path, data):
    run = _copy(killed_in_epoch_0, tmp_path)
    # what a kill inside Keras' in-place ModelCheckpoint write leaves: a truncated HDF5 file
    backup = (run / "backup" / resume.BACKUP_NAME).read_bytes()
    (run / train.BEST_WEIGHTS).write_bytes(backup[:len(backup) // 2])
    # settings that do not change the training may change on a resume
    results = train.train(_experiment(tmp_path, data, ["train.backup_every_steps=3"]))
    # formerly: KeyError: 'epoch' (empty CSV) and OSError: truncated file, on every rerun
    log = (run / "train.log").read_text()
    assert "resuming from the backup at step 2 of 8" in log and "is damaged" in log
    assert _epochs(run) == ["0", "1"] and results["steps"] == 8
    assert results["weights"] == "best validation MAE"
    assert callbacks.usable_weights_file(str(run / train.BEST_WEIGHTS))


def test_a_backup_is_refused_by_a_rerun_with_other_settings(killed_in_epoch_0, tmp_path, data):
    run = _copy(killed_in_epoch_0, tmp_path)
    config = (run / "config.yaml").read_text()
    changed = _experiment(tmp_path, data, ["train.batch_size=4",
                                           "optimizer.learning_rate=0.01"])
    with pytest.raises(train.RunFolderError) as error:
        train.train(changed)
    message = str(error.value)
    assert "train.batch_size: 8 -> 4" in message
    assert "optimizer.learning_rate: 0.001 -> 0.01" in message
    assert "start fresh: delete" in message and "--set output_dir=" in message
    assert (run / "config.yaml").read_text() == config  # still the settings that trained
    assert not (run / "results.json").exists()


def test_kills_during_the_finish_rerun_into_the_same_export(tmp_path, data, monkeypatch):
    # 1. killed after the SavedModel's version folder was renamed into place
    _kill_on_call(monkeypatch, export, "write_models_config")
    with pytest.raises(Killed):
        train.train(_experiment(tmp_path, data, export_enabled=True))
    version = tmp_path / "saved" / "run" / "1"
    assert (version / "saved_model.pb").exists()
    assert not (tmp_path / "saved" / "models.config").exists()
    monkeypatch.undo()
    # 2. killed after results.json, before the backup was removed
    _kill_on_call(monkeypatch, resume.StepBackup, "remove")
    with pytest.raises(Killed):  # formerly: FileExistsError on every rerun
        train.train(_experiment(tmp_path, data, export_enabled=True))
    run = tmp_path / "run"
    assert (run / "results.json").exists() and (run / "backup").exists()
    assert (tmp_path / "saved" / "models.config").exists()
    monkeypatch.undo()
    # leftovers of kills inside writes: a SavedModel scratch folder, .keras temporaries
    (tmp_path / "saved" / "run" / ".1.partial-abc123").mkdir()
    (run / ".partial-xyz.keras").write_bytes(b"half")
    (run / ".model.keras.partial-xyz.keras").write_bytes(b"half")
    results = train.train(_experiment(tmp_path, data, export_enabled=True))
    assert results["saved_model"] == str(version)
    assert "this run exported it before it was interrupted" in (run / "train.log").read_text()
    assert sorted(os.listdir(tmp_path / "saved" / "run")) == ["1"]
    assert not [name for name in os.listdir(run) if "partial" in name]
    assert not (run / "backup").exists()
    # the export is readable by a server running as another user
    for folder, folders, files in os.walk(version):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755, folder
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o644, name
    assert stat.S_IMODE((run / "model.keras").stat().st_mode) == 0o644


def test_a_second_training_into_the_same_run_folder_is_refused(tmp_path, data):
    experiment = _experiment(tmp_path, data)
    with safe_io.FolderLock(experiment.run_dir, "another training"):
        with pytest.raises(safe_io.FolderBusyError, match="another process right now"):
            train.train(experiment)


def test_a_planted_link_in_the_run_folder_is_not_followed(tmp_path, data):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / "config.yaml")
    os.symlink(outside, run / "results.json.partial")  # the fixed name older writers used
    save_config(_experiment(tmp_path, data), str(run / "config.yaml"))
    assert not (run / "config.yaml").is_symlink()  # replaced, the target untouched
    for name in ("train.log", "training_log.csv", "tensorboard", "backup"):
        os.symlink(outside if "." in name else tmp_path, run / name)
        with pytest.raises(safe_io.UnsafePathError, match=f"{name} is a symbolic link"):
            train.train(_experiment(tmp_path, data))
        os.remove(run / name)
    assert outside.read_text() == "precious"


def test_a_diverged_run_stops_or_says_loudly_that_it_learned_nothing(tmp_path, data):
    experiment = _experiment(tmp_path, data, ["optimizer.learning_rate=1e6", "train.epochs=1"])
    assert experiment.optimizer.learning_rate == 1e6  # formerly refused as a string
    try:
        results = train.train(experiment)
    except train.TrainingStopped as error:
        message = str(error)
        backup = tmp_path / "run" / "backup" / resume.BACKUP_NAME
        if backup.exists():
            assert "same command resumes from it" in message
        else:
            assert "No backup with finite weights was written" in message
    else:
        verdict = results["no_better_than_mean"]
        assert verdict["mean_predictor_mae"] > 0
        assert "no better than predicting the training mean" in verdict["message"]
        assert "WARNING" in (tmp_path / "run" / "train.log").read_text()
    best = tmp_path / "run" / train.BEST_WEIGHTS
    if best.exists():  # never a file of non-finite weights
        import h5py

        with h5py.File(best, "r") as handle:
            arrays = []
            handle.visititems(lambda name, item: arrays.append(item[()])
                              if isinstance(item, h5py.Dataset) else None)
        assert all(np.isfinite(a).all() for a in arrays if np.asarray(a).dtype.kind == "f")


def test_backups_and_best_weights_refuse_non_finite_weights(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.set_weights([np.full((2, 1), np.nan, np.float32), np.zeros(1, np.float32)])
    best = callbacks.BestCheckpoint(str(tmp_path / "best.weights.h5"), "val_loss")
    best.set_model(model)
    best.on_epoch_end(0, {"val_loss": 1.0})
    backup = resume.StepBackup(str(tmp_path / "backup"), every_steps=1)
    backup.set_model(model)
    model.stop_training = False
    backup.save()
    assert os.listdir(tmp_path) == [] and not backup.exists()
    assert backup.refused_step == 0 and math.isinf(best.best)


def test_a_truncated_shard_is_named_instead_of_a_raw_data_loss_error(tmp_path):
    # A folder from before builds recorded their shards: nothing to check up front, so
    # the damage shows up as TensorFlow's DataLossError while training reads the shard.
    root = write_tfrecord_set(str(tmp_path / "data"), SPACE, {"train": 16, "val": 8},
                              image_size=32, shards_per_split=1)
    shard = tmp_path / "data" / "train-00000-of-00001.tfrecord"
    content = shard.read_bytes()
    shard.write_bytes(content[:len(content) * 2 // 3])
    with pytest.raises(ManifestError, match=r"train-00000-of-00001.tfrecord: truncated"
                       r".*data_prep.build rebuilds a damaged shard"):
        train.train(_experiment(tmp_path, root, ["train.epochs=1"]))

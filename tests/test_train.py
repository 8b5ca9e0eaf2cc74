"""tfdldl.train end to end on real synthetic TFRecords with a tiny model, and its refusals."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep.synthetic import write_tfrecord_set
from data_prep.tfrecord_writer import write_shard
from tfdldl import distribute, example_schema, inference, train
from tfdldl.config import ConfigError
from tfdldl.experiment import load_experiment
from tfdldl.label_space import AGE, SCUT_FBP5500
from tfdldl.manifest import ManifestError, read_manifest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = AGE  # 0..100 years: results.json then has CS@5 among its CS thresholds


def _config(tmp_path, data, name="run", extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: {name}
output_dir: {tmp_path / name}
data: {{tfrecords: {data}}}
model: {{arch: tiny, input_size: 32, width: 0.5}}
optimizer: {{learning_rate: 0.003, schedule: cosine, warmup_epochs: 1}}
train: {{epochs: 2, batch_size: 8, backup_every_steps: 3, verbose: 0}}
export: {{saved_models_dir: {tmp_path / 'saved_models'}}}
{extra}""")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    # Faces stored at 40 px for a 32 px model: the export must remember the 40.
    return write_tfrecord_set(str(root / "age"), SPACE, {"train": 32, "val": 8, "test": 8},
                              image_size=40)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """One finished run, with the gender head fed into the age head, that the tests below
    read (one run, not two: runs are this file's slowest steps). Runs without the gender
    head: tests/test_train_faults.py (with its export) and tests/test_resume.py."""
    tmp_path = tmp_path_factory.mktemp("train_run")
    experiment = load_experiment(_config(tmp_path, data), [
        "seed=1", "gender.names=[male, female]", "gender.weight=0.5",
        "model.gender_into_age=true"])
    results = train.train(experiment)
    return tmp_path, experiment, results


def test_a_run_writes_every_output(finished):
    tmp_path, experiment, results = finished
    run = tmp_path / "run"
    for name in ("config.yaml", "train.log", "training_log.csv", "best.weights.h5",
                 "model.keras", "results.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (run / "backup").exists()  # removed once everything was written
    assert "seed: 1" in (run / "config.yaml").read_text()  # the resolved config
    with open(run / "training_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    # Cosine schedule: warm-up to 0.003 over epoch 0, then down to 0 at the last step.
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.003)
    assert float(rows[1]["learning_rate"]) < 1e-6
    written = json.loads((run / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    test = written["test"]
    assert test["count"] == 8 and test["flip_averaged"] and np.isfinite(test["mae"])
    assert "5" in test["cs_at"] and test["epsilon_error"] is None  # constant σ here
    assert written["steps"] == 8 and written["best_epoch"] in (0, 1)
    version = tmp_path / "saved_models" / "run" / "1"
    assert (version / "saved_model.pb").is_file()
    assert (tmp_path / "saved_models" / "models.config").is_file()
    assert written["saved_model"] == str(version)
    predictor = inference.load_predictor(str(version))
    assert (predictor.input_size, predictor.face_size) == (32, 40)  # predict aligns at 40


def test_a_finished_run_folder_is_not_overwritten(finished):
    _, experiment, _ = finished
    with pytest.raises(train.RunFolderError, match="finished run"):
        train.train(experiment)


def test_initial_weights_on_another_label_space_are_refused(finished, tmp_path):
    other = write_tfrecord_set(str(tmp_path / "scut"), SCUT_FBP5500,
                               {"train": 16, "val": 8, "test": 8}, image_size=32)
    model = finished[0] / "run" / "model.keras"
    experiment = load_experiment(_config(tmp_path, other),
                                 [f"model.initial_weights={model}"])
    with pytest.raises(ManifestError,
                       match=r"built with label space attractiveness \[1, 5\].*uses age \[0, 100"):
        train.train(experiment)


def test_missing_data_and_bad_batch_are_clear_errors(data, tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        train.train(load_experiment(_config(tmp_path, tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="has no manifest.json.*rerun data_prep.build"):
        train.train(load_experiment(_config(tmp_path, tmp_path / "empty")))
    with pytest.raises(ManifestError, match="no split 'validation'.*it has: train, val, test"):
        train.train(load_experiment(_config(tmp_path, data), ["data.val_split=validation"]))
    with pytest.raises(distribute.DistributionError, match="not divisible by the 2 replicas"):
        train.train(load_experiment(_config(tmp_path, data), ["train.batch_size=7"]),
                    distribute.make_strategy("mirrored"))


def test_nan_loss_stops_cleanly_with_a_message(tmp_path):
    root = write_tfrecord_set(str(tmp_path / "nan"), SPACE, {"train": 16, "val": 8},
                              image_size=32, shards_per_split=1)
    manifest = read_manifest(root)
    jpeg = next(iter(__import__("tensorflow").data.TFRecordDataset(manifest.shards("val"))))
    example = __import__("tensorflow").train.Example.FromString(jpeg.numpy())
    encoded = example.features.feature[example_schema.IMAGE].bytes_list.value[0]
    broken = [example_schema.FaceRecord(
        jpeg=encoded, image_size=32, label=10.0, sigma=2.0,
        distribution=np.full(SPACE.num_classes, np.nan, np.float32))] * 16
    write_shard(manifest.shards("train")[0], broken)  # a corrupt build: NaN targets
    experiment = load_experiment(_config(tmp_path, root, name="nanrun"),
                                 ["data.test_split=''"])
    with pytest.raises(train.TrainingStopped, match=r"loss became nan at epoch 0, step 0"):
        train.train(experiment)
    run = tmp_path / "nanrun"
    assert not (run / "results.json").exists() and not (run / "model.keras").exists()


def test_cli_config_typo_exits_2_without_traceback(data, tmp_path):
    config = _config(tmp_path, data, extra="trian: {epochs: 1}\n")
    with pytest.raises(ConfigError, match="unknown key 'trian'; did you mean 'train'"):
        load_experiment(config)
    process = subprocess.run(
        [sys.executable, "-m", "tfdldl.train", "--config", config, "--set", "train.epochs=x"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert process.returncode == 2
    assert "unknown key 'trian'" in process.stderr and "Traceback" not in process.stderr


def test_cli_help_is_quick_lists_the_flags_and_exits_0():
    """--help answers before TensorFlow or Keras load, with the train flags, status 0."""
    done = subprocess.run(
        [sys.executable, "-c", "import atexit, runpy, sys; atexit.register(lambda: print("
         "'heavy loaded:', [m for m in ('tensorflow', 'keras') if m in sys.modules])); "
         "sys.argv = ['train', '--help']; runpy.run_module('tfdldl.train', run_name='__main__')"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--config: Config YAML" in done.stdout and "--set: Override" in done.stdout
    assert "heavy loaded: []" in done.stdout


def test_a_run_with_the_gender_head_trains_logs_and_exports_it(finished):
    """gender.names adds the gender head: its targets come from the records, its accuracy
    is logged, and the SavedModel answers gender_probability under its names."""
    tmp_path, _, results = finished
    with open(tmp_path / "run" / "training_log.csv") as handle:
        row = next(csv.DictReader(handle))
    assert 0.0 <= float(row["val_gender_probability_accuracy"]) <= 1.0
    assert float(row["gender_probability_loss"]) > 0.0
    predictor = inference.load_predictor(results["saved_model"])
    assert predictor.class_names == {"gender_probability": ["male", "female"]}
    outputs = predictor.predict_images(np.zeros((2, 32, 32, 3), np.float32))
    assert outputs["gender_probability"].shape == (2, 2)
    test = results["test"]  # flip-averaged, on the SavedModel; the records alternate 0, 1
    assert 0.0 <= test["gender_accuracy"] <= 1.0
    confusion = test["gender_confusion"]  # 2x2 counts over the 8 test faces, named
    assert confusion["class_names"] == ["male", "female"]
    assert [sum(row) for row in confusion["counts"]] == [4, 4]
    assert sum(confusion["counts"][code][code] for code in (0, 1)) == \
        round(8 * test["gender_accuracy"])
    # age MAE per gender: the evaluation slices by the records' gender
    assert [row["count"] for row in test["slices"]["gender"]["groups"]] == [4, 4]


@pytest.mark.parametrize("override, message", [
    ("gender.names=[male]", "'gender.names' must be empty .no gender head. or at least two"),
    ("gender.names=[a, a]", "'gender.names' must be empty"),
    ("gender.weight=-1", "'gender.weight' must be finite and >= 0"),
    ("model.gender_into_age=true", "'model.gender_into_age' needs the gender head"),
])
def test_gender_config_values_are_checked(tmp_path, data, override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(_config(tmp_path, data), [override])


@pytest.mark.parametrize("name, arch", [("utkface_thin_gender", "thin"),
                                        ("utkface_tiny_gender", "tiny")])
def test_shipped_age_gender_configs_build_their_network(name, arch):
    """The UTKFace age+gender configs: both heads, attention and gender into age, each
    switchable from the command line (the issue's comparison)."""
    from tfdldl import heads, model_setup

    path = os.path.join(REPO_ROOT, "configs", f"{name}.yaml")
    model = model_setup.build_network(load_experiment(path), SPACE)
    assert model.name == f"{arch}agenet"
    assert heads.class_names(model) == {"gender_probability": ["male", "female"]}
    assert {"attention", "gender_embedding"} <= {layer.name for layer in model.layers}
    age_only = model_setup.build_network(load_experiment(path, [
        "gender.names=[]", "model.gender_into_age=false", "model.attention=false"]), SPACE)
    assert sorted(age_only.output_names) == ["distribution", "value"]

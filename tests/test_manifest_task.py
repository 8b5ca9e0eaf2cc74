"""The task (age or attractiveness) is explicit in the manifest, the data config and the
experiment; manifests written before the key existed stay readable."""

import json

import pytest

from data_prep.config import load_data_config
from data_prep.synthetic import write_tfrecord_set
from tfdldl import model_setup
from tfdldl.config import ConfigError
from tfdldl.experiment import Experiment
from tfdldl.label_space import AGE, SCUT_FBP5500, LabelSpace
from tfdldl.manifest import ManifestError, read_manifest


def _rewrite(root, change) -> None:
    path = f"{root}/manifest.json"
    with open(path) as handle:
        manifest = json.load(handle)
    change(manifest)
    with open(path, "w") as handle:
        json.dump(manifest, handle)


@pytest.fixture(scope="module")
def scut(tmp_path_factory):
    return write_tfrecord_set(str(tmp_path_factory.mktemp("scut") / "data"), SCUT_FBP5500,
                              {"train": 4}, image_size=32)


def test_the_manifest_says_its_task_and_old_manifests_get_the_former_rule(scut, tmp_path):
    assert read_manifest(scut).raw["task"] == "attractiveness"
    assert read_manifest(scut).task == "attractiveness"
    # A manifest without the key (written before it existed): the label space's name when
    # that names a task, else age.
    for space, expected in ((SCUT_FBP5500, "attractiveness"), (AGE, "age"),
                            (LabelSpace(0.0, 9.0, 1.0, name="label"), "age")):
        root = write_tfrecord_set(str(tmp_path / space.name / str(space.maximum)), space,
                                  {"train": 2}, image_size=32)
        _rewrite(root, lambda manifest: manifest.pop("task"))
        assert read_manifest(root).task == expected
    _rewrite(root, lambda manifest: manifest.update(task="beauty"))
    with pytest.raises(ManifestError, match="task 'beauty' is not one of age, attractiveness"):
        read_manifest(root)


def test_an_experiment_of_another_task_is_refused(scut):
    experiment = Experiment(name="ages")
    experiment.model.arch, experiment.model.input_size = "tiny", 32
    with pytest.raises(ManifestError, match=r"holds attractiveness labels but experiment "
                                            r"'ages' is for the age task; set task: attractiveness"):
        model_setup.build_compiled_model(experiment, read_manifest(scut), steps_per_epoch=1)


def test_the_data_config_task_must_match_the_label_space_name(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("label_space: {name: attractiveness, minimum: 1, maximum: 5, step: 0.1}\n"
                    "sigma: {value: 0.2}\n")
    with pytest.raises(ConfigError, match="label_space.name 'attractiveness' names another "
                                          "task than task 'age'; set task: attractiveness"):
        load_data_config(str(path))
    path.write_text(path.read_text() + "task: attractiveness\n")
    assert load_data_config(str(path)).task == "attractiveness"

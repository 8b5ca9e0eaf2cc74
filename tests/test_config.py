"""tfdldl.config and the data config's checks against careless and hostile files."""

import os
import time

import pytest

from data_prep.config import load_data_config
from tfdldl.config import MAX_NODES, ConfigError
from tfdldl.experiment import load_experiment


def _laughs(levels: int) -> str:
    """A "billion laughs" YAML as the value of train.epochs: each level's list holds the
    previous level 9 times (9**levels strings once expanded)."""
    lists = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lists += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "train: {epochs: [" + ", ".join(lists) + "]}\n"


@pytest.mark.parametrize("levels", [6, 10])
def test_aliases_expanding_past_the_limit_are_refused_fast(tmp_path, levels):
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(levels))
    assert path.stat().st_size < 1000
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES:,} values") as error:
        load_experiment(str(path))
    assert time.monotonic() - start < 2
    assert len(str(error.value)) < 300


def test_an_error_about_a_large_value_quotes_a_bounded_excerpt(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(_laughs(4))  # 9**4 = 6561 strings: under the limit, a wrong type
    with pytest.raises(ConfigError, match=r"'train.epochs' must be int, got \[\[") as error:
        load_experiment(str(path))
    assert len(str(error.value)) < 200 + len(str(path))
    path.write_text("name: " + "x" * 100_000 + "\ntrain: {epochs: [" + "7," * 50_000 + "]}\n")
    with pytest.raises(ConfigError) as error:
        load_experiment(str(path))
    assert len(str(error.value)) < 200 + len(str(path))


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("augment: &a {nested: *a}\n")
    with pytest.raises(ConfigError, match="recursive YAML anchor"):
        load_experiment(str(path))


def test_exponent_floats_mean_what_the_user_means(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\noptimizer: {learning_rate: 3e-4, weight_decay: 1E-5}\n")
    experiment = load_experiment(str(path), ["optimizer.learning_rate=1e6"])
    assert experiment.optimizer.learning_rate == 1e6
    assert load_experiment(str(path)).optimizer.weight_decay == 1e-5
    assert load_experiment(str(path), ['name="1e6"']).name == "1e6"  # quoted: a string


@pytest.mark.parametrize("override, key", [
    ("optimizer.learning_rate=.nan", "optimizer.learning_rate"),
    ("optimizer.learning_rate=.inf", "optimizer.learning_rate"),
    ("augment.color_jitter=-.inf", "augment.color_jitter"),
])
def test_non_finite_floats_are_refused_naming_the_key(tmp_path, override, key):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match=f"'{key}' must be a finite number"):
        load_experiment(str(path), [override])


@pytest.mark.parametrize("override, message", [
    ("splits.ratios=[.nan, 0.5, 0.5]", r"'splits.ratios\[0\]' must be a finite number"),
    ("sigma.value=.inf", "'sigma.value' must be a finite number"),
    ("sigma.value=1e9", "sigma.value must lie in 0..1000 label steps"),
    ("alignment.max_side=0", "alignment.max_side must lie in"),
    ("alignment.output_size=100000", "alignment.output_size must lie in 16..1024"),
    ("alignment.min_face_size=0", "alignment.min_face_size must lie in 12"),
    ("alignment.thresholds=[0.6, 0.7, 7]", r"thresholds are probabilities in \(0, 1\)"),
])
def test_data_config_values_are_checked_with_ranges(tmp_path, override, message):
    path = tmp_path / "data.yaml"
    path.write_text("dataset: x\n")
    load_data_config(str(path))  # the defaults pass
    with pytest.raises(ConfigError, match=message):
        load_data_config(str(path), [override])


def test_a_bad_value_is_blamed_on_the_override_that_gave_it(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\ntrain: {batch_size: 0}\n")
    with pytest.raises(ConfigError) as error:
        load_experiment(str(path), ["train.epochs=1", "train={epochs: ten}",
                                    "data.tfrecords=nowhere", "model.width"],
                        check_files=True)
    assert sorted(error.value.problems) == sorted([
        "--set 'model.width' must look like section.key=value",
        "--set 'train={epochs: ten}': 'train.epochs' must be int, got 'ten' (str)",
        f"--set 'data.tfrecords=nowhere': 'data.tfrecords' 'nowhere' "
        f"({os.path.abspath('nowhere')}) is not a folder; give the folder data_prep.build "
        "wrote (it holds manifest.json), or build it: python -m data_prep.build --config "
        "configs/<data config>.yaml"])  # the later override replaced the file's train section whole
    with pytest.raises(ConfigError) as error:
        load_experiment(str(path), ["train.epochs=3"])
    assert error.value.problems == [f"{path}: 'train.batch_size' must be >= 1, got 0"]


@pytest.mark.parametrize("text, meant", [
    ("train: {verbos: 1}", "; did you mean 'train.verbose'?"),  # a typo in its section
    ("train: {learning_rate: 0.1}", "; did you mean 'optimizer.learning_rate'?"),
    ("learning_rat: 0.1", "; did you mean 'optimizer.learning_rate'?"),  # a typo, elsewhere
    ("model: {name: a}", "; did you mean 'name', 'loss.name' or 'optimizer.name'?"),
    ("model: {zzz: 1}", " (allowed here: arch,"),  # nothing close: no guess
])
def test_an_unknown_key_names_the_keys_it_may_have_meant(tmp_path, text, meant):
    path = tmp_path / "x.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        load_experiment(str(path))
    [problem] = error.value.problems
    key = problem.split("unknown key '", 1)[1].split("'", 1)[0]
    assert problem.startswith(f"{path}: unknown key '{key}'{meant}"), problem


def test_an_override_may_set_one_entry_of_a_list_with_the_files_checks(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("dataset: x\nsplits: {ratios: [0.8, 0.1, 0.1]}\n")
    data = load_data_config(str(path), ["splits.ratios[0]=0.7", "splits.ratios[1]=0.2"])
    assert data.splits.ratios == [0.7, 0.2, 0.1]
    with pytest.raises(ConfigError) as error:
        load_data_config(str(path), ["splits.ratios[1]=.nan"])
    assert error.value.problems[0] == ("--set 'splits.ratios[1]=.nan': 'splits.ratios[1]' "
                                       "must be a finite number, got nan")

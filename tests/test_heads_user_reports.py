"""What a user trying the config-defined categorical heads ran into (issue 10's follow-up):
each bad ``heads:`` entry is refused before TensorFlow loads, naming the entry, where it
came from (the file or the --set that gave the list) and the fix."""

import json
import os

import pytest

from tfdldl.config import ConfigError, override_name
from tfdldl.experiment import load_experiment
from tiny_models import REPO_ROOT

AGE = "{name: age, kind: distribution}"
RACE = "{name: race, kind: categorical, attribute: group, names: [a, b, c]}"


def _manifest(folder, group=None):
    """A data folder whose manifest.json has no shards and, optionally, a group section."""
    folder.mkdir()
    manifest = {"schema_version": 1, "image_size": 64, "splits": {},
                "label_space": {"name": "age", "minimum": 0.0, "maximum": 100.0, "step": 1.0}}
    if group is not None:
        manifest["group"] = {"name": "race", "labels": group}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _refused(tmp_path, text, overrides=(), check_files=False) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        load_experiment(str(path), overrides, check_files=check_files)
    return str(error.value)


@pytest.mark.parametrize("name, fix", [("race group", "race_group"), ("race/x", "race_x"),
                                       ("race-x", "race_x"), ("2race", "head_2race")])
def test_a_head_name_that_cannot_name_outputs_and_attributes_is_refused(tmp_path, name, fix):
    # 'race/x' reached Keras' layer-name check deep inside the model build; 'race group'
    # gave a face attribute no one can type and a column with a space.
    message = _refused(tmp_path, f"heads: [{AGE}, {{name: '{name}', kind: categorical, "
                                 "attribute: group, names: [a, b]}]")
    assert (f"'heads[1].name' must be letters, digits and _ (not starting with a digit), "
            f"got {name!r}") in message
    assert f"e.g. {fix}" in message


@pytest.mark.parametrize("name", ["value", "stddev", "low", "high", "confidence", "status",
                                  "message", "box", "interval", "warning", "classes"])
def test_a_categorical_head_named_like_a_prediction_field_is_refused(tmp_path, name):
    # A head named 'value' overwrote the age in predict's CSV/JSON rows, and face.value
    # kept the age while face.value_confidence gave the head's probability.
    message = _refused(tmp_path, f"heads: [{AGE}, {{name: {name}, kind: categorical, "
                                 "attribute: group, names: [a, b]}]")
    assert (f"'heads[1].name' {name!r} is a field that prediction rows or AgeEstimator "
            f"faces already have") in message
    assert f"rename the head, e.g. {name}_class" in message


def test_a_categorical_head_named_age_beside_a_label_head_named_otherwise_is_refused(tmp_path):
    message = _refused(tmp_path, "heads: [{name: years, kind: distribution}, {name: age, "
                                 "kind: categorical, attribute: group, names: [a, b]}]")
    assert "'heads[1].name' 'age' is a field that prediction rows" in message


def test_a_head_named_like_another_heads_confidence_column_is_refused(tmp_path):
    message = _refused(tmp_path, f"heads: [{AGE}, {RACE}, {{name: race_confidence, "
                                 "kind: categorical, attribute: gender, names: [m, f]}]")
    assert ("'heads[2].name' 'race_confidence' is the confidence column of the head 'race'; "
            "rename one of them") in message


@pytest.mark.parametrize("index, entry", [(0, "{name: age, kind: distribution, weight: 0}"),
                                          (1, "{name: race, kind: categorical, "
                                              "attribute: group, names: [a, b], weight: 0}")])
def test_a_zero_weight_is_refused_as_a_head_served_untrained(tmp_path, index, entry):
    heads = [entry, RACE] if index == 0 else [AGE, entry]
    message = _refused(tmp_path, f"heads: [{', '.join(heads)}]")
    assert (f"'heads[{index}].weight' is 0: the head would be exported and served untrained; "
            "give it a weight > 0, or remove the entry to drop the head") in message


@pytest.mark.parametrize("setting", ["lam: 0.5", "kl_normalization: mean"])
def test_label_loss_settings_on_a_categorical_head_are_refused(tmp_path, setting):
    # They were silently ignored: the user believed the race loss was scaled.
    message = _refused(tmp_path, f"heads: [{AGE}, {{name: race, kind: categorical, "
                                 f"attribute: group, names: [a, b], {setting}}}]")
    assert (f"'heads[1].{setting.split(':')[0]}' is a label head's setting" in message
            and "remove it from the categorical head" in message)


def test_an_empty_class_name_is_refused(tmp_path):
    message = _refused(tmp_path, f"heads: [{AGE}, {{name: race, kind: categorical, "
                                 "attribute: group, names: ['', b]}]")
    assert "'heads[1].names' must be at least two distinct class names" in message
    assert "none empty" in message


def test_heads_given_with_set_are_blamed_on_the_set(tmp_path):
    given = "heads=[{name: age, kind: distribution}, {name: race, kind: categorical, " \
            "attribute: group, names: [a]}]"
    message = _refused(tmp_path, "name: x", [given])
    assert message.startswith(f"{override_name(given)}: 'heads[1].names' must be at least two")


@pytest.mark.parametrize("entry, read_problem", [
    ("{name: race, kind: categorical, attribute: group, names: [0, 1]}",
     "'heads[1].names[0]' must be str, got 0 (int)"),
    ("{name: race, kind: categorical, attribute: group, names: [a, b], weight: high}",
     "'heads[1].weight' must be float, got 'high' (str)"),
    ("{name: race, kind: categorical, attribute: group, nmes: [a, b]}",
     "unknown key 'heads[1].nmes'"),
])
def test_a_heads_entry_that_cannot_be_read_adds_no_false_into_label_problem(tmp_path, entry,
                                                                           read_problem):
    # The unreadable list was left empty, so 'model.into_label' was also reported as naming
    # a missing head ("the categorical heads are []"), though the config has it.
    message = _refused(tmp_path, f"model: {{into_label: race}}\nheads: [{AGE}, {entry}]")
    assert read_problem in message
    assert "into_label" not in message


def test_into_label_naming_the_label_head_says_so(tmp_path):
    message = _refused(tmp_path, f"model: {{into_label: age}}\nheads: [{AGE}, {RACE}]")
    assert ("'model.into_label' names the label head 'age', which cannot feed itself; the "
            "categorical heads are ['race'] (set model.into_label: '' to feed none)") in message
    older = _refused(tmp_path, "model: {into_label: age}\ngender: {names: [m, f]}")
    assert "'model.into_label' names the label head 'age'" in older


def test_dropping_the_gender_head_of_the_gender_config_says_how_to_stop_feeding_it():
    # The README's "--set gender.names=[] trains age only" was refused on
    # configs/utkface_tiny_gender.yaml (it feeds gender into age) without saying how to
    # switch that off.
    config = os.path.join(REPO_ROOT, "configs", "utkface_tiny_gender.yaml")
    with pytest.raises(ConfigError) as error:
        load_experiment(config, ["gender.names=[]"])
    assert "(set model.gender_into_age: false to feed none)" in str(error.value)
    both = ["gender.names=[]", "model.gender_into_age=false"]
    assert load_experiment(config, both).gender.names == []
    race = os.path.join(REPO_ROOT, "configs", "utkface_tiny_age_gender_race.yaml")
    assert load_experiment(race, ["model.into_label=''"]).model.into_label == ""


def test_fewer_class_names_than_the_datas_group_codes_are_refused(tmp_path):
    # The masked cross-entropy gave codes past the names a zero target row: the race head
    # trained without them and evaluate then failed on them.
    data = _manifest(tmp_path / "data", ["White", "Black", "Asian", "Indian", "Others"])
    message = _refused(tmp_path, f"data: {{tfrecords: {data}}}\nheads: [{AGE}, {RACE}]",
                       check_files=True)
    assert ("'heads[1].names' gives 3 classes, but the data's race codes run 0..4 (White, "
            "Black, Asian, Indian, Others); give one name per code in that order, e.g. "
            "[white, black, asian, indian, others]") in message


def test_a_group_head_on_data_without_groups_is_refused(tmp_path):
    data = _manifest(tmp_path / "data")
    message = _refused(tmp_path, f"data: {{tfrecords: {data}}}\nheads: [{AGE}, {RACE}]",
                       check_files=True)
    assert "'heads[1].attribute' is 'group', but the data in" in message
    assert "defines no group codes" in message


def test_as_many_names_as_the_datas_group_codes_are_accepted(tmp_path):
    data = _manifest(tmp_path / "data", ["A", "B", "C"])
    path = tmp_path / "good.yaml"
    path.write_text(f"data: {{tfrecords: {data}}}\nheads: [{AGE}, {RACE}]\n")
    assert load_experiment(str(path), check_files=True).heads[1].names == ["a", "b", "c"]


def test_a_drawn_label_too_wide_for_the_photo_gets_a_line_per_head():
    # On a 200 px UTKFace chip, "age 27 +/-21 female 0.572 white 0.454" ran off the right
    # edge: the race was not visible.
    import cv2

    from tfdldl.predict_output import FaceRow, face_label, label_lines

    row = FaceRow(file="chip.jpg", status="ok", x=3.0, y=0.0, width=177.0, height=193.0,
                  value=26.6, stddev=20.8,
                  classes={"gender": ("female", 0.572), "race": ("white", 0.454)})
    lines = label_lines(row, "age", 200, 0.5, 1)
    assert lines == ["age 27 +/-21", "female 0.572", "white 0.454"]
    assert all(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] <= 200
               for line in lines)
    assert label_lines(row, "age", 1000, 0.5, 1) == [face_label(row)]


RACE_CONFIG = os.path.join(REPO_ROOT, "configs", "utkface_tiny_age_gender_race.yaml")


def _problems(config, overrides):
    with pytest.raises(ConfigError) as error:
        load_experiment(config, overrides)
    return error.value.problems


def test_one_heads_entry_can_be_set_by_index_with_the_files_checks():
    # '--set heads[2].weight=-1' was "unknown key 'heads[2]'; did you mean 'heads'?",
    # blamed on the file.
    experiment = load_experiment(RACE_CONFIG, ["heads[2].weight=0.5", "heads[1].names=[m, f]"])
    assert [spec.weight for spec in experiment.heads] == [1.0, 1.0, 0.5]
    assert experiment.heads[1].names == ["m", "f"]
    assert _problems(RACE_CONFIG, ["heads[2].weight=-1"]) == [
        "--set 'heads[2].weight=-1': 'heads[2].weight' must be finite and >= 0, got -1.0"]
    assert _problems(RACE_CONFIG, ["heads[2].weight=high"]) == [
        "--set 'heads[2].weight=high': 'heads[2].weight' must be float, got 'high' (str)"]


@pytest.mark.parametrize("override, problem", [
    ("heads[3].weight=2", ": 'heads' holds 3 entries (heads[0] to heads[2]), so there is no "
                          "heads[3]; set one of them, or give the whole list: "
                          "--set 'heads=[...]'"),
    ("gender[0].weight=2", ": 'gender' is no list here (it is given by the file or an earlier "
                           "--set), so it has no entry [0]; give the whole list: "
                           "--set 'gender=[...]'"),
    ("heads[-1].weight=2", " has a bad index in 'heads[-1]': write key[i] with i = 0, 1, ..."),
    ("heads[x].weight=2", " has a bad index in 'heads[x]': write key[i] with i = 0, 1, ..."),
])
def test_a_bad_indexed_override_says_what_would_do(override, problem):
    assert _problems(RACE_CONFIG, [override]) == [f"{override_name(override)}{problem}"]


def test_setting_an_aliased_heads_entry_by_index_changes_only_that_entry(tmp_path):
    path = tmp_path / "aliased.yaml"
    path.write_text("heads:\n  - {name: age, kind: distribution}\n"
                    "  - &race {name: race, kind: categorical, attribute: group, "
                    "names: [a, b]}\n  - *race\n")
    experiment = load_experiment(str(path), ["heads[2].name=race2", "heads[2].weight=3"])
    assert [(spec.name, spec.weight) for spec in experiment.heads[1:]] == [
        ("race", 1.0), ("race2", 3.0)]


def test_an_empty_into_label_override_says_how_to_give_an_empty_string(tmp_path):
    # '--set model.into_label=' gave "must be str, got None".
    [problem] = _problems(RACE_CONFIG, ["model.into_label="])
    assert problem.startswith("--set 'model.into_label=': 'model.into_label' must be str, "
                              "got nothing (null)")
    assert """give an empty string quoted: --set "model.into_label=''\"""" in problem
    path = tmp_path / "x.yaml"
    path.write_text("model:\n  into_label:\n")
    [problem] = _problems(str(path), [])
    assert "give an empty string quoted: into_label: ''" in problem


def test_an_unknown_key_in_a_heads_entry_is_matched_against_the_entrys_fields(tmp_path):
    # 'clases: [a, b]' was answered with "did you mean 'heads[1].loss'?"
    message = _refused(tmp_path, f"heads: [{AGE}, {{name: race, kind: categorical, "
                                 "attribute: group, clases: [a, b]}]")
    assert "unknown key 'heads[1].clases'; did you mean 'heads[1].names'?" in message


def test_heads_with_a_gender_section_from_set_blame_the_set_too():
    [problem] = _problems(RACE_CONFIG, ["gender.names=[m, f]"])
    assert problem.startswith(f"{RACE_CONFIG} (heads) and --set 'gender.names=[m, f]' "
                              "(gender): give the heads either as a 'heads' list or in the "
                              "older 'loss'/'gender' sections, not both")


def test_more_class_names_than_the_schemas_gender_codes_are_refused(tmp_path):
    message = _refused(tmp_path, f"heads: [{AGE}, {{name: sex, kind: categorical, "
                                 "attribute: gender, names: [m, f, x]}]")
    assert ("'heads[1].names' gives 3 classes, but the records' gender codes are only 0 "
            "(male) and 1 (female) (tfdldl.example_schema); give at most 2 names in that "
            "order, e.g. [male, female]") in message
    older = _refused(tmp_path, "gender: {names: [m, f, x]}")
    assert "'gender.names' gives 3 classes, but the records' gender codes" in older


def test_a_missing_label_head_made_by_an_indexed_set_is_blamed_on_it():
    entry = "heads[0]={name: years, kind: categorical, attribute: gender, names: [m, f]}"
    [problem] = _problems(RACE_CONFIG, [entry, "model.into_label=''",
                                        "heads[1].attribute=group"])
    assert problem.startswith(f"{override_name(entry)} (heads[0]) and {RACE_CONFIG} "
                              "(heads[1], heads[2]): 'heads' must hold exactly one label head")

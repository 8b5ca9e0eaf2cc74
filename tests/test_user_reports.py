"""Problems a new user met with tfdldl.predict, train and evaluate, each pinned by the fix's
regression test."""

import io
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from tfdldl import cli, evaluate, predict
from tfdldl.config import ConfigError
from tfdldl.experiment import load_experiment
from tfdldl.face_align import FaceAligner
from tfdldl.predict_inputs import Frame, duplicates_note, expand_inputs, nothing_to_predict
from tfdldl.predict_output import STATUS_FACE, STATUS_NO_FACE, FaceRow, Tally, draw
from tiny_models import REPO_ROOT


def _flags(**changes):
    values = dict(batch_size=32, video_stride=0, interval=0.9, min_face_size=None,
                  max_side=1024, output=None, draw=None)
    return types.SimpleNamespace(**{**values, **changes})


# Runs a command line (module, then its arguments) in a fresh interpreter and prints its
# exit status and whether TensorFlow or Keras was imported by then.
_RUN_CLI = """
import runpy, sys
module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
try:
    runpy.run_module(module, run_name="__main__")
except SystemExit as exit_:
    print(exit_.code, any(name in sys.modules for name in ("tensorflow", "keras")))
"""


def _run_cli(module, *args):
    return subprocess.run([sys.executable, "-c", _RUN_CLI, module, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("flags, message", [
    (["--format", "xml"], "flag --format=xml: value should be one of <table|jsonl|csv>"),
    (["--no_progress", "--interval", "1.5"],  # --no_progress is read as absl's --noprogress
     "error: --interval must lie between 0 and 1 (e.g. 0.9), got 1.5"),
    (["--output", "ages.json"], "predict writes JSON Lines (one JSON object per line)"),
])
def test_bad_flags_exit_with_status_2_before_tensorflow_is_imported(flags, message):
    done = _run_cli("tfdldl.predict", "photo.jpg", *flags)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert message in done.stderr


def test_inputs_that_do_not_exist_are_reported_before_tensorflow_is_imported(tmp_path):
    missing, empty = tmp_path / "photo.jpg", tmp_path / "empty"
    empty.mkdir()
    done = _run_cli("tfdldl.predict", str(missing), str(empty))
    assert done.stdout.split() == ["1", "False"], done.stdout + done.stderr
    first, second = done.stderr.splitlines()
    assert first == f"error: {missing}: no such file or folder; nothing to predict"
    assert second.startswith(f"error: {empty}: folder contains no images (looked recursively")
    assert nothing_to_predict([str(missing), *expand_inputs([str(empty)], videos=False)]) == []


def test_every_switch_is_turned_off_with_no_underscore_as_documented():
    from absl import flags

    values = flags.FlagValues()
    flags.DEFINE_bool("progress", True, "on by default", flag_values=values)
    flags.DEFINE_bool("no_flip", False, "a flag of its own", flag_values=values)
    flags.DEFINE_string("name", None, "not a switch", flag_values=values)
    argv = ["predict", "--no_progress", "-no_progress", "--noprogress", "--no_flip",
            "--no_name", "a.jpg", "--", "--no_progress"]
    assert cli.spelled_for_absl(argv, values) == [
        "predict", "--noprogress", "-noprogress", "--noprogress", "--no_flip", "--no_name",
        "a.jpg", "--", "--no_progress"]
    assert values(cli.spelled_for_absl(["predict", "--no_progress", "--no_flip"], values))
    assert (values.progress, values.no_flip) == (False, True)


def test_an_output_file_without_format_gets_the_format_its_extension_names():
    assert predict.output_format("ages.csv", "table", format_given=False) == "csv"
    assert predict.output_format("out/ages.JSONL", "table", format_given=False) == "jsonl"
    assert predict.output_format("ages.txt", "table", format_given=False) == "table"
    assert predict.output_format("ages.csv", "table", format_given=True) == "table"
    assert predict.output_format(None, "jsonl", format_given=True) == "jsonl"


def test_unwritable_output_and_draw_are_refused_before_the_model_loads(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"")
    missing = tmp_path / "no_such_folder" / "ages.csv"
    assert predict._flag_problem(_flags(output=str(missing)), ["x"]) == (
        f"--output {missing}: folder {missing.parent} does not exist; create it first")
    assert "is a folder; give a file name" in predict._flag_problem(
        _flags(output=str(tmp_path)), ["x"])
    assert "is a file, not a folder" in predict._flag_problem(_flags(draw=str(photo)), ["x"])
    assert predict._flag_problem(_flags(output=str(tmp_path / "ages.csv"),
                                        draw=str(tmp_path / "drawn")), ["x"]) == ""


def test_an_empty_array_is_refused_with_its_shape_not_a_zero_division():
    with pytest.raises(ValueError, match=r"at least 1 x 1 pixels, got an empty one \(0, 5, 3\)"):
        FaceAligner(output_size=64).detect(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 1 x 1 pixels"):
        FaceAligner(output_size=64).center_crop(np.zeros((4, 0, 3), np.uint8))


def test_files_a_folder_holds_besides_images_are_counted_and_named(tmp_path):
    for name in ("a.jpg", "notes.txt", "sub/clip.mp4", "sub/b.png"):
        os.makedirs((tmp_path / name).parent, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    skipped = []
    found = expand_inputs([str(tmp_path)], videos=False, skipped=skipped)
    assert found == [str(tmp_path / "a.jpg"), str(tmp_path / "sub" / "b.png")]
    assert skipped == [str(tmp_path / "notes.txt"), str(tmp_path / "sub" / "clip.mp4")]
    line = Tally(skipped=skipped).line(1.0)
    assert "; 2 file(s) in the folders skipped, not images (" in line
    assert "notes.txt" in line and "videos are read with --video_stride N" in line
    assert "skipped" not in Tally().line(1.0)
    with_videos = []
    expand_inputs([str(tmp_path)], videos=True, skipped=with_videos)
    assert with_videos == [str(tmp_path / "notes.txt")]


def test_a_file_reached_twice_is_predicted_once_and_counted(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "sub/b.png"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "a.jpg", tmp_path / "link.jpg")
    photo, other, link = (str(tmp_path / name) for name in ("a.jpg", "sub/b.png", "link.jpg"))
    duplicates = []
    found = expand_inputs([photo, str(tmp_path / "nowhere.jpg"), str(tmp_path),
                           str(tmp_path / "*" / "*.png")], videos=False, duplicates=duplicates)
    assert [getattr(item, "name", item) for item in found] == [
        photo, str(tmp_path / "nowhere.jpg"), other]  # the first place each file is named
    assert duplicates == [photo, link, other]  # through the folder, a link, the pattern
    assert expand_inputs(found, videos=False) == found  # an expanded list: nothing changes
    assert duplicates_note(duplicates) == (
        f"; 3 input(s) given twice, predicted once ({photo}, {link}, {other})")
    assert duplicates_note(duplicates * 2).endswith(f"({photo}, {link}, {other} and 3 more)")
    assert duplicates_note([]) == ""


def test_the_summary_says_how_many_photos_are_video_frames():
    tally = Tally()
    tally.add(Frame("a.jpg", np.zeros((1, 1, 3), np.uint8)), [FaceRow("a.jpg", STATUS_FACE)])
    for index in range(2):
        name = f"clip.mp4#frame={index}"
        tally.add(Frame(name, np.zeros((1, 1, 3), np.uint8), video_frame=index),
                  [FaceRow(name, STATUS_NO_FACE)])
    assert tally.line(3.0) == ("3 photo(s), 1 face(s), 2 without a face, 0 error(s) in 3.0 s "
                               "(1.00 photos/s); 2 of the photo(s) are video frames")


def test_a_photo_whose_name_holds_the_frame_marker_is_drawn_as_a_photo(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    photo = Frame(str(tmp_path / "a#frame=3.jpg"), image)
    frame = Frame(str(tmp_path / "clip.mp4") + "#frame=7", image, video_frame=7)
    assert os.path.basename(draw(photo, [], str(tmp_path / "drawn"))) == "a#frame=3.jpg"
    assert os.path.basename(draw(frame, [], str(tmp_path / "drawn"))) == "clip_frame000007.jpg"


def test_a_picture_smaller_than_the_smallest_face_says_why_it_has_none(untrained_tiny_model):
    from tfdldl.inference import aligner_for, load_predictor

    predictor = load_predictor(untrained_tiny_model[0])
    aligner = aligner_for(predictor)
    frames = [Frame("dot.png", np.full((1, 1, 3), 128, np.uint8)),
              Frame("grey.png", np.full((40, 60, 3), 128, np.uint8))]
    dot, grey = predict.predict_frames(frames, predictor, aligner)
    assert dot[0].status == grey[0].status == STATUS_NO_FACE
    assert dot[0].message == ("the image is 1x1 px, smaller than the smallest face looked "
                              "for (20 px; --min_face_size)")
    assert grey[0].message == ""


def test_age_estimator_refuses_a_batch_size_below_one_before_loading():
    import tfdldl

    with pytest.raises(ValueError, match="batch_size must be at least 1.*got 0"):
        tfdldl.AgeEstimator("no/such/model", batch_size=0)


# Every kind of config problem at once: unknown key (a typo, and a key of another
# section), wrong type, out of range (in the file and in an override), a bad heads entry,
# a missing data folder.
_BAD_CONFIG = """name: x
trian: {epochs: 1}
data: {tfrecords: no_such_folder}
train: {epochs: ten, batch_size: 0, learning_rate: 0.1}
augment: {color_jitter: 2.0}
heads: [{name: age, kind: softmax}]
"""
_BAD_CONFIG_PROBLEMS = [
    "unknown key 'trian'; did you mean 'train'?",
    "unknown key 'train.learning_rate'; did you mean 'optimizer.learning_rate'?",
    "'train.epochs' must be int, got 'ten' (str)",
    "'train.batch_size' must be >= 1, got 0",
    "'optimizer.learning_rate' must be > 0, got -1.0",
    "'augment.color_jitter' must lie in [0, 1), got 2.0",
    "'heads[0].kind' must be one of 'distribution', 'regression', 'ranking', 'categorical', got "
    "'softmax'",
    "'data.tfrecords' 'no_such_folder' (",
]


def test_train_reports_every_config_problem_before_tensorflow_is_imported(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(_BAD_CONFIG)
    done = _run_cli("tfdldl.train", "--config", str(config),
                    "--set", "optimizer.learning_rate=-1")
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    head, *lines = done.stderr.strip().splitlines()
    assert head == f"error: {len(_BAD_CONFIG_PROBLEMS)} problems in the config (fix them all):"
    assert len(lines) == len(_BAD_CONFIG_PROBLEMS)
    for problem in _BAD_CONFIG_PROBLEMS:
        assert sum(problem in line for line in lines) == 1, (problem, lines)
    # Each problem names where its value came from: the override, or the file.
    given = "  --set 'optimizer.learning_rate=-1': 'optimizer.learning_rate' must be > 0"
    assert sum(line.startswith(given) for line in lines) == 1, lines
    assert all(line.startswith((given, f"  {config}: ")) for line in lines), lines


def test_config_problems_are_collected_in_nested_sections_and_list_entries(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("heads: [{name: 1, kind: distribution}, {name: g, weight: heavy}]\n"
                      "optimizer: 3\nexport: {version: 0}\n")
    with pytest.raises(ConfigError) as error:
        load_experiment(str(config), ["train.verbose=9", "export.versoin=2"])
    assert error.value.problems == [
        f"{config}: 'heads[0].name' must be str, got 1 (int)",
        f"{config}: 'heads[1].weight' must be float, got 'heavy' (str)",
        f"{config}: 'optimizer' must be a mapping, got int",
        "--set 'export.versoin=2': unknown key 'export.versoin'; did you mean "
        "'export.version'? (allowed here: enabled, name, saved_models_dir, version)",
        "--set 'train.verbose=9': 'train.verbose' must be 0 (silent), 1 (a progress bar per "
        "step) or 2 (a line per epoch), or be left out (1 on a terminal, 2 in a log), got 9",
        f"{config}: 'export.version' must be >= 1, got 0",
    ]


def test_missing_files_are_config_problems_when_asked_for(tmp_path):
    config = tmp_path / "x.yaml"
    (tmp_path / "records").mkdir()
    config.write_text(f"data: {{tfrecords: {tmp_path / 'records'}}}\n"
                      f"model: {{initial_weights: {tmp_path / 'w.keras'}}}\n")
    load_experiment(str(config))  # a library caller may build the data later
    with pytest.raises(ConfigError) as error:
        load_experiment(str(config), check_files=True)
    assert error.value.problems == [
        f"{config}: 'data.tfrecords' '{tmp_path / 'records'}' has no manifest.json: it is not "
        "a data_prep.build folder, or the build did not finish (rerun data_prep.build: it "
        "resumes)",
        f"{config}: 'model.initial_weights' '{tmp_path / 'w.keras'}' is not a file; give a "
        ".keras or .weights.h5 file, or null to train from scratch"]


def test_evaluate_reports_every_flag_problem_before_tensorflow_is_imported(tmp_path):
    nowhere, no_model = tmp_path / "nowhere", tmp_path / "no_model"
    done = _run_cli("tfdldl.evaluate", "--data", str(nowhere), "--model", str(no_model),
                    "--batch_size", "0", "--age_groups", "5,3", "--out", __file__,
                    "--no_progress", "--no_flip")
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: --data {nowhere} --split test: TFRecord folder {nowhere} does not exist; "
        "build it with data_prep.build",
        f"error: --model {no_model} does not exist; pass a SavedModel folder "
        "(saved_models/<name>/<version>) or a .keras file",
        f"error: --out {__file__} is a file; give a folder for results.json and the report",
        "error: --batch_size must be >= 1, got 0",
        "error: --age_groups: age group edges must be finite and increasing, got [5.0, 3.0] "
        "(e.g. 0,4,8,15,25,38,48,60)"]


def test_evaluate_flags_name_a_missing_split_and_pass_real_data_and_model(
        tmp_path, untrained_tiny_model):
    from data_prep.synthetic import write_tfrecord_set
    from tfdldl.label_space import AGE

    data = write_tfrecord_set(str(tmp_path / "data"), AGE, {"test": 4}, image_size=32)
    values = types.SimpleNamespace(data=data, split="test", model=untrained_tiny_model[0],
                                   out=str(tmp_path / "eval"), batch_size=8,
                                   age_groups="0,10,20")
    assert evaluate.flag_problems(values) == []
    values.split = "val"
    assert evaluate.flag_problems(values) == [
        f"--data {data} --split val: {data} has no split 'val' (it has: test)"]


def test_progress_is_a_line_per_epoch_unless_stdout_is_a_terminal(tmp_path, monkeypatch):
    config = tmp_path / "x.yaml"
    config.write_text("name: x\n")
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a log file, nohup, CI
    assert load_experiment(str(config)).train.verbose == 2
    assert load_experiment(str(config), ["train.verbose=1"]).train.verbose == 1
    leader, follower = os.openpty()
    try:
        with open(follower, "w") as terminal:
            monkeypatch.setattr(sys, "stdout", terminal)
            assert load_experiment(str(config)).train.verbose == 1
            assert load_experiment(str(config), ["train.verbose=0"]).train.verbose == 0
    finally:
        os.close(leader)
    done = subprocess.run([sys.executable, "-m", "tfdldl.train", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "2 when it is not\n(a log file, nohup, CI)" in done.stdout

"""Problems a new user met with tfdldl.predict, each pinned by the fix's regression test."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from tfdldl import predict
from tfdldl.face_align import FaceAligner
from tfdldl.predict_inputs import Frame, expand_inputs
from tfdldl.predict_output import STATUS_FACE, STATUS_NO_FACE, FaceRow, Tally, draw
from tiny_models import REPO_ROOT


def _flags(**changes):
    values = dict(batch_size=32, video_stride=0, interval=0.9, min_face_size=None,
                  max_side=1024, output=None, draw=None)
    return types.SimpleNamespace(**{**values, **changes})


# Runs predict's command line in a fresh interpreter and prints its exit status and
# whether TensorFlow was imported by then.
_RUN_PREDICT = """
import runpy, sys
sys.argv = ["predict"] + sys.argv[1:]
try:
    runpy.run_module("tfdldl.predict", run_name="__main__")
except SystemExit as exit_:
    print(exit_.code, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("flags, message", [
    (["--format", "xml"], "flag --format=xml: value should be one of <table|jsonl|csv>"),
    (["--interval", "1.5"], "error: --interval must lie between 0 and 1 (e.g. 0.9), got 1.5"),
])
def test_bad_flags_exit_with_status_2_before_tensorflow_is_imported(flags, message):
    done = subprocess.run([sys.executable, "-c", _RUN_PREDICT, "photo.jpg", *flags],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert message in done.stderr


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

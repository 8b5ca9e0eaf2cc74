"""tfdldl.predict on real UTKFace photos (MTCNN + alignment + a real SavedModel) and bad inputs."""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfdldl import predict, predict_output
from tfdldl.api import MODEL_ENV, SHIPPED_MODEL, resolve_model
from tfdldl.face_align import FaceAligner
from tfdldl.image_io import read_rgb
from tfdldl.inference import ModelLoadError, aligner_for, load_predictor
from tfdldl.label_space import AGE
from tiny_models import REPO_ROOT

GENDERS = ("man", "woman")  # the session gender model's names


@pytest.fixture(scope="module")
def saved_model(untrained_tiny_model):
    """The session's untrained tiny age SavedModel (64 px), read only."""
    return untrained_tiny_model[0]


@pytest.fixture(scope="module")
def gender_model(trained_tiny_gender_model):
    """The session's tiny age+gender SavedModel (32 px), read only."""
    return trained_tiny_gender_model[0]


@pytest.fixture(scope="module")
def photos(utkface_dir):
    files = sorted(glob.glob(os.path.join(utkface_dir, "*.jpg")))
    return files[100:4000:1300]  # three people of different ages


def test_each_utkface_photo_gives_one_face_equal_to_serving_default(saved_model, photos):
    predictor = load_predictor(saved_model)
    aligner = FaceAligner(output_size=predictor.input_size)
    results = list(predict.predict_paths(photos, predictor, aligner, batch_size=2))
    assert [frame.name for frame, _ in results] == photos
    serving = tf.saved_model.load(saved_model).signatures["serving_flip_averaged"]
    for (frame, rows), path in zip(results, photos):
        assert len(rows) == 1 and rows[0].status == predict.STATUS_FACE, rows
        row = rows[0]
        assert AGE.minimum <= row.value <= AGE.maximum
        assert row.low <= row.value <= row.high and row.stddev > 0
        assert 0.7 <= row.confidence <= 1.0 and row.width > 50  # ONet threshold 0.7
        # The same photo through the shared aligner, then the flip-averaging serving
        # signature (predict averages each face with its mirror by default) on PNG bytes.
        crop = aligner.detect_and_align(read_rgb(path))[0].image
        png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes()
        expected = serving(images=tf.constant([png]))
        # Two float32 forward passes averaged in NumPy vs in the graph: 1e-3 years apart.
        assert row.value == pytest.approx(float(expected["value"][0]), abs=1e-3)
        assert row.stddev == pytest.approx(float(expected["stddev"][0]), abs=1e-3)


@pytest.mark.parametrize("flip, signature", [(False, "serving_default"),
                                             (True, "serving_flip_averaged")])
def test_gender_of_each_utkface_photo_equals_the_serving_signatures(gender_model, photos, flip,
                                                                    signature):
    """predict's gender and gender_confidence are the class and probability that the
    SavedModel's serving signature gives the same aligned face (PNG bytes), within 1e-4."""
    predictor = load_predictor(gender_model)
    aligner = aligner_for(predictor)
    serving = tf.saved_model.load(gender_model).signatures[signature]
    for (_, [row]), path in zip(predict.predict_paths(photos, predictor, aligner, flip=flip),
                                photos):
        crop = aligner.detect_and_align(read_rgb(path))[0].image
        png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes()
        expected = serving(images=tf.constant([png]))["gender_probability"].numpy()[0]
        name, confidence = row.classes["gender"]
        assert name == GENDERS[int(np.argmax(expected))]
        assert confidence == pytest.approx(float(expected.max()), abs=1e-4)
        assert row.value == pytest.approx(float(serving(images=tf.constant([png]))["value"][0]),
                                          abs=1e-3)


def test_command_line_writes_and_draws_gender_for_a_gender_model(gender_model, photos,
                                                                 tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tfdldl.predict", *photos[:2], "--model", gender_model,
         "--format", "csv", "--draw", str(tmp_path / "drawn")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == ("file,status,face,x,y,width,height,value,stddev,low,high,confidence,"
                        "gender,gender_confidence,message")
    rows = list(csv.DictReader(lines))
    assert [row["gender"] in GENDERS for row in rows] == [True, True]
    assert all(0.5 <= float(row["gender_confidence"]) <= 1.0 for row in rows)
    assert len(os.listdir(tmp_path / "drawn")) == 2


def test_batches_detected_ahead_of_the_model_give_the_rows_of_one_batch(saved_model, photos):
    """predict_paths detects each next batch on a second thread while the model runs: the
    rows equal those of all photos detected and predicted in one batch."""
    predictor = load_predictor(saved_model)
    aligner = aligner_for(predictor)
    together = predict.predict_frames([predict.Frame(path, read_rgb(path)) for path in photos],
                                      predictor, aligner)
    ahead = [rows for _, rows in predict.predict_paths(photos, predictor, aligner, batch_size=1)]
    assert len(ahead) == len(together) == 3
    def numbers(rows):
        return np.array([(r.x, r.y, r.width, r.height, r.confidence, r.value) for r in rows])

    for one, other in zip(ahead, together):  # float32 sums over other batch sizes: 1e-3
        np.testing.assert_allclose(numbers(one), numbers(other), atol=1e-3)


def test_every_face_of_a_photo_is_reported(saved_model, photos, tmp_path):
    pair = np.hstack([cv2.imread(photos[0]), cv2.imread(photos[1])])
    cv2.imwrite(str(tmp_path / "two.png"), pair)
    predictor = load_predictor(saved_model)
    [(frame, rows)] = predict.predict_paths([str(tmp_path / "two.png")], predictor,
                                            FaceAligner(output_size=predictor.input_size),
                                            batch_size=1)  # one face per forward pass
    assert [row.face for row in rows] == [0, 1]
    assert sorted(row.x < 200 for row in rows) == [False, True]  # one face in each half


def test_command_line_reports_bad_inputs_and_processes_the_others(saved_model, photos,
                                                                   tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 256, (120, 120, 3), np.uint8))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (200, 200))
    for _ in range(3):
        writer.write(cv2.imread(photos[0]))
    writer.release()
    out = tmp_path / "rows.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "tfdldl.predict", photos[0], str(text), str(empty), str(noise),
         str(tmp_path / "missing_*.jpg"), str(video), str(tmp_path / "n*.png"),
         "--model", saved_model,
         "--format", "jsonl", "--output", str(out), "--draw", str(tmp_path / "drawn"),
         "--video_stride", "2"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]  # some inputs could not be read
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_file = {row["file"]: row for row in rows}
    assert by_file[photos[0]]["status"] == "ok"
    assert "not an image" in by_file[str(text)]["message"]
    assert "no images" in by_file[str(empty)]["message"]
    assert by_file[str(noise)]["status"] == "no_face"
    assert "matches no file" in by_file[str(tmp_path / "missing_*.jpg")]["message"]
    assert by_file[f"{video}#frame=0"]["status"] == "ok"
    assert by_file[f"{video}#frame=2"]["value"] == pytest.approx(by_file[f"{video}#frame=0"]["value"], abs=0.5)
    assert f"{video}#frame=1" not in by_file
    assert "Traceback" not in done.stderr
    # TensorFlow's start-up chatter (CUDA probing, absl's pre-init notice) stays hidden
    assert "InitializeLog" not in done.stderr and "cuda" not in done.stderr.lower()
    assert f"model: {saved_model} (version 1 of tiny)" in done.stderr
    summary = done.stderr.splitlines()[-1]
    assert "4 photo(s), 3 face(s), 1 without a face, 3 error(s) in" in summary, summary
    # noise.png again through the pattern: predicted once, and said so
    assert f"; 1 input(s) given twice, predicted once ({noise}); rows in" in summary, summary
    drawn = os.listdir(tmp_path / "drawn")
    assert len(drawn) == 4  # the photo, the noise picture, two video frames
    assert all(cv2.imread(str(tmp_path / "drawn" / name)) is not None for name in drawn)


def test_table_and_csv_formats(saved_model):
    import io

    row = predict.FaceRow("a.jpg", predict.STATUS_FACE, face=0, x=1, y=2, width=30,
                          height=40, value=33.3, stddev=4.0, low=27.0, high=40.0,
                          confidence=0.99)
    table, comma = io.StringIO(), io.StringIO()
    predict.RowWriter(table, "table", "age").write(row)
    predict.RowWriter(comma, "csv").write(row)
    assert "age" in table.getvalue().splitlines()[0]
    assert "[27, 40]" in table.getvalue()
    assert comma.getvalue().splitlines()[1].startswith("a.jpg,ok,0,1,2,30,40,33.3,4.0,27.0,40.0")
    # a model without the gender head: the columns of an age-only model, and its label
    assert "gender" not in table.getvalue() + comma.getvalue()
    assert comma.getvalue().splitlines()[0] == ("file,status,face,x,y,width,height,value,"
                                                "stddev,low,high,confidence,message")
    assert predict_output.face_label(row) == "age 33 +/-4"


def test_gender_columns_and_label_of_a_gender_model():
    import io

    row = predict.FaceRow("a.jpg", predict.STATUS_FACE, face=0, x=1, y=2, width=30,
                          height=40, value=33.3, stddev=4.0, confidence=0.99,
                          classes={"gender": ("female", 0.87)})
    table, lines = io.StringIO(), io.StringIO()
    predict.RowWriter(table, "table", "age", ["gender"]).write(row)
    predict.RowWriter(lines, "jsonl", categorical=["gender"]).write(row)
    header, cells = table.getvalue().splitlines()
    assert header.split()[9:11] == ["gender", "g.conf"]
    assert cells.split()[7:10] == ["0.990", "female", "0.870"]  # no interval given
    record = json.loads(lines.getvalue())
    assert (record["gender"], record["gender_confidence"]) == ("female", 0.87)
    assert list(record)[-3:] == ["gender", "gender_confidence", "message"]
    assert predict_output.face_label(row) == "age 33 +/-4 female 0.870"


def test_model_folders_without_the_signatures_are_refused(tmp_path):
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    tf.saved_model.save(module, str(tmp_path / "foreign"))
    with pytest.raises(ModelLoadError, match="serving_default"):
        load_predictor(str(tmp_path / "foreign"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ModelLoadError, match="no saved_model.pb"):
        load_predictor(str(tmp_path / "nothing"))
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=".keras"):
        load_predictor(str(tmp_path / "weights.h5"))


def test_shipped_model_by_default_visible_drawings_and_warnings(photos, tmp_path):
    """No --model: the shipped model's highest version; ../ inputs draw to visible files."""
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    shutil.copy(photos[0], tmp_path / "photos" / "sub" / "face.jpg")
    cv2.imwrite(str(tmp_path / "photos" / "tiny.png"), np.full((1, 1, 3), 128, np.uint8))
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (tmp_path / "work").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "tfdldl.predict", "../photos", "../clip.mp4", "--aligned",
         "--format", "jsonl", "--draw", "drawn"],
        capture_output=True, text=True, cwd=tmp_path / "work", timeout=300,
        env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert done.returncode == 1, done.stderr[-2000:]
    highest = max(int(name) for name in os.listdir(SHIPPED_MODEL) if name.isdigit())
    assert f"(version {highest} of utkface_tinyagenet)" in done.stderr
    rows = {os.path.basename(row["file"]): row
            for row in map(json.loads, done.stdout.splitlines())}
    assert "--video_stride" in rows["clip.mp4"]["message"]
    assert rows["tiny.png"]["status"] == "ok"
    assert rows["tiny.png"]["message"].startswith("warning: a 1x1 px image")
    assert rows["face.jpg"]["message"] == ""
    # named below the inputs' common folder (tmp_path): no "..__" hidden names
    assert sorted(os.listdir(tmp_path / "work" / "drawn")) == ["photos__sub__face.jpg",
                                                              "photos__tiny.jpg"]


def test_drawing_names_stay_visible_and_below_their_root():
    assert predict_output.drawing_name("../photos/a/b.jpg", os.path.abspath("../photos")) == "a__b"
    assert predict_output.drawing_name("../photos/.hidden.jpg") == "hidden"
    assert predict_output.common_root(["/p/a/x.jpg", "/p/b/y.jpg"]) == "/p"


def test_python_api_gives_the_command_lines_faces(saved_model, photos, monkeypatch):
    import tfdldl

    estimator = tfdldl.AgeEstimator(saved_model, batch_size=2)
    predictor = load_predictor(saved_model)
    [(_, rows)] = predict.predict_paths(photos[:1], predictor, aligner_for(predictor))
    [face] = estimator.predict(photos[0])
    assert face.box == (rows[0].x, rows[0].y, rows[0].width, rows[0].height)
    assert face.age == face.value == pytest.approx(rows[0].value, abs=1e-4)
    assert face.interval == (rows[0].low, rows[0].high) and face.warning == ""
    [from_array] = estimator.predict(read_rgb(photos[0]))
    assert from_array.age == pytest.approx(face.age, abs=1e-4)
    assert [len(faces) for faces in estimator.predict_many(photos)] == [1, 1, 1]
    with pytest.raises(ValueError, match="uint8 RGB"):
        estimator.predict(read_rgb(photos[0]).astype(np.float32))
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert resolve_model() == SHIPPED_MODEL
    monkeypatch.setenv(MODEL_ENV, saved_model)
    assert resolve_model() == saved_model and resolve_model("x") == "x"


def test_help_lists_each_clis_own_and_shared_flags_without_loading_tensorflow():
    done = subprocess.run([sys.executable, "-m", "data_prep.build", "--help"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert "--config: Config YAML" in done.stdout and "--set: Override" in done.stdout
    done = subprocess.run(
        [sys.executable, "-c", "import atexit, runpy, sys; atexit.register(lambda: print("
         "'tensorflow loaded:', 'tensorflow' in sys.modules)); sys.argv = ['predict', "
         "'--help']; runpy.run_module('tfdldl.predict', run_name='__main__')"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert "--model: SavedModel folder" in done.stdout and "--[no]progress" in done.stdout
    assert "tensorflow loaded: False" in done.stdout

"""Predict age (or attractiveness) for every face in photos, folders, globs or videos.

    python -m tfdldl.predict photo.jpg
    python -m tfdldl.predict photos/ "more/*.jpg" --format csv --output ages.csv --draw drawn/
    python -m tfdldl.predict clip.mp4 --video_stride 10 --model saved_models/utkface_tinyagenet

Without ``--model`` the model shipped with tfdldl is used (``saved_models/utkface_tinyagenet``,
its highest version); the model and version loaded are printed first.

Each photo goes through the same MTCNN detector and 5-point template as the training
data (:class:`tfdldl.face_align.FaceAligner`), every detected face is aligned and
predicted in batches, and one row per face is reported: file, face index (0 = most confident), box,
value, standard deviation and central interval of the predicted distribution (calibrated
when the model stores a temperature, see tfdldl.calibration), and the detector's
confidence; each categorical head of the model adds its most probable class's name and
probability (``<name>``, ``<name>_confidence``, e.g. ``gender``, ``gender_confidence``;
``--draw`` writes them after the value), and an age-only model prints no such columns. A
photo without a face gets one "no_face" row; an unreadable file or an empty folder gets one "error" row with the reason, and the
other inputs go on; when no input exists at all, predict says so without loading the
model. A file reached twice (given, and inside a given folder) is predicted once, and the
summary says so. A progress bar (stderr) follows a run over many files, and a summary
line ends it.

Exit status: 0 every input was read; 1 some input could not be read (see its "error" row);
2 bad flags or model.

``--aligned`` skips detection for inputs that are already aligned faces (each whole image,
centre-cropped to a square, is one face). Videos (by extension) contribute every
``--video_stride``-th frame, named ``clip.mp4#frame=120``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
import time
from typing import Iterator, Sequence

from tfdldl import cli
from tfdldl.calibration import calibrate_outputs
from tfdldl.inference import Predictor
from tfdldl.output_names import categorical_head_of
from tfdldl.predict_inputs import (Frame, InputError, duplicates_note, expand_inputs,
                                   nothing_to_predict, read_frames)
from tfdldl.predict_output import (FORMATS, STATUS_ERROR, STATUS_FACE, FaceRow, Progress,
                                   RowWriter, Tally, common_root, describe_model, draw)
from tfdldl.predict_rows import face_rows, predict_in_batches

# What callers use from here: this module's API, and the names of the row and input types
# they read its results with (re-exported).
__all__ = ["predict_frames", "predict_paths", "output_format", "main", "define_flags", "run",
           "STAGES", "EXTENSION_FORMATS", "Frame", "InputError", "expand_inputs", "FaceRow",
           "RowWriter", "STATUS_FACE", "STATUS_ERROR"]


# -- prediction --------------------------------------------------------------------------

def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


STAGES = ("read", "detection", "alignment", "model")


@contextlib.contextmanager
def _stage(timings: dict[str, float] | None, name: str):
    """Add the wall time of the block to ``timings[name]`` (seconds) when timings is given."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _faces_of(frames: list[Frame], aligner, aligned: bool,
              timings: dict[str, float] | None = None):
    """(box, confidence, crop) per face, per frame; best face first."""
    if aligned:
        with _stage(timings, "alignment"):
            return [[((0.0, 0.0, float(f.rgb.shape[1]), float(f.rgb.shape[0])), None,
                      aligner.center_crop(f.rgb))] for f in frames]
    with _stage(timings, "detection"):
        detected = aligner.detect_batch([f.rgb for f in frames])
    with _stage(timings, "alignment"):
        return [[(face.box, face.confidence, aligner.align(frame.rgb, face.landmarks))
                 for face in faces] for frame, faces in zip(frames, detected)]


def predict_frames(frames: list[Frame], predictor: Predictor, aligner, aligned: bool = False,
                   interval_mass: float = 0.9, batch_size: int = 32,
                   timings: dict[str, float] | None = None,
                   flip: bool = True) -> list[list[FaceRow]]:
    """Rows for each frame: one per face, or a single "no_face" row.

    Args:
      frames: pictures, detected together (one detection batch).
      predictor: the loaded model.
      aligner: a FaceAligner whose output_size is the model's ``face_size`` (the size of
        the faces it was trained from).
      aligned: the frames are aligned faces already (no detection).
      interval_mass: probability inside the reported [low, high] interval.
      batch_size: faces per forward pass of the model; all faces of ``frames`` go
        through the model together.
      timings: when given, seconds spent per stage ("detection", "alignment", "model")
        are added to it.
      flip: average each face's prediction with its mirror image's (the paper's test).
    """
    return _rows_of(frames, _faces_of(frames, aligner, aligned, timings), predictor, aligner,
                    aligned, interval_mass, batch_size, timings, flip)


def _rows_of(frames: list[Frame], faces: list, predictor: Predictor, aligner, aligned: bool,
             interval_mass: float, batch_size: int, timings: dict[str, float] | None,
             flip: bool) -> list[list[FaceRow]]:
    """:func:`predict_frames` after detection: ``faces`` holds (box, confidence, crop) per
    face, per frame (:func:`_faces_of`)."""
    crops = [crop for per_frame in faces for _, _, crop in per_frame]
    with _stage(timings, "model"):
        outputs = calibrate_outputs(predict_in_batches(predictor, crops, batch_size, flip),
                                    predictor.temperature, predictor.label_space.grid)
    return face_rows(frames, faces, outputs, predictor, aligner, aligned, interval_mass)


def predict_paths(arguments: Sequence[str | InputError], predictor: Predictor, aligner,
                  batch_size: int = 32, video_stride: int = 0, aligned: bool = False,
                  interval_mass: float = 0.9, timings: dict[str, float] | None = None,
                  flip: bool = True
                  ) -> Iterator[tuple[Frame | None, list[FaceRow]]]:
    """Predict every face in ``arguments`` (files, folders, globs, videos; or the list
    :func:`tfdldl.predict_inputs.expand_inputs` made of them).

    ``batch_size`` pictures are detected together and ``batch_size`` faces go through
    the model together. The pictures are read, detected and aligned on a second thread,
    one batch ahead of the model: while the model predicts the faces of one batch, the
    next batch is decoded and searched for faces (both cores busy; TensorFlow and OpenCV
    release the GIL). ``timings``, when given, collects the seconds spent per stage
    (:data:`STAGES`: reading and decoding, detection, alignment, model); with more than
    one batch the stages overlap, so their sum may exceed the wall time. ``flip``
    averages each face with its mirror image (:func:`predict_frames`).

    Yields:
      (frame, rows) per picture in input order; frame is None for an input error.
    """
    def pictures():
        for item in expand_inputs(arguments, videos=video_stride > 0):
            if isinstance(item, InputError):
                yield item
            else:
                frames = read_frames(item, video_stride)
                while True:
                    with _stage(timings, "read"):
                        frame = next(frames, None)
                    if frame is None:
                        break
                    yield frame

    chunks = _chunks(pictures(), batch_size)

    def prepare():
        """The next chunk with its frames' faces detected and aligned; None at the end."""
        chunk = next(chunks, None)
        if chunk is None:
            return None
        frames = [item for item in chunk if isinstance(item, Frame)]
        return chunk, frames, _faces_of(frames, aligner, aligned, timings) if frames else []

    with concurrent.futures.ThreadPoolExecutor(1, "tfdldl-detect") as ahead:
        upcoming = ahead.submit(prepare)
        while (prepared := upcoming.result()) is not None:
            upcoming = ahead.submit(prepare)
            chunk, frames, faces = prepared
            predicted = iter(_rows_of(frames, faces, predictor, aligner, aligned,
                                      interval_mass, batch_size, timings, flip)
                             if frames else [])
            for item in chunk:
                if isinstance(item, InputError):
                    yield None, [FaceRow(item.name, STATUS_ERROR, message=item.message)]
                else:
                    yield item, next(predicted)


# -- command line ------------------------------------------------------------------------

def _flag_problem(values, paths: Sequence[str]) -> str:
    """What is wrong with the command line, or ""."""
    if not paths:
        return "give at least one photo, folder, glob or video to predict on"
    if values.batch_size < 1 or values.video_stride < 0:
        return "--batch_size must be >= 1 and --video_stride >= 0"
    if not 0.0 < values.interval < 1.0:
        return f"--interval must lie between 0 and 1 (e.g. 0.9), got {values.interval}"
    if values.min_face_size is not None and not 12 <= values.min_face_size <= values.max_side:
        return (f"--min_face_size must lie in 12..--max_side ({values.max_side}) pixels, got "
                f"{values.min_face_size} (MTCNN's smallest window is 12 px)")
    if (values.output and os.path.splitext(values.output)[1].lower() == ".json"
            and not values["format"].present):
        return (f"--output {values.output}: predict writes JSON Lines (one JSON object per "
                "line), not one JSON document: name the file .jsonl, or keep the name and "
                "pass --format jsonl")
    return _output_problem(values.output, values.draw)


# The format an --output file's extension asks for when --format is not given.
EXTENSION_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def output_format(output: str | None, format_flag: str, format_given: bool) -> str:
    """The rows' format: ``--format`` when given, else the one ``--output``'s extension
    names (:data:`EXTENSION_FORMATS`), else ``format_flag``'s default (the table)."""
    if format_given or not output:
        return format_flag
    return EXTENSION_FORMATS.get(os.path.splitext(output)[1].lower(), format_flag)


def _output_problem(output: str | None, draw_folder: str | None) -> str:
    """What makes --output or --draw unwritable (checked before the model loads), or ""."""
    if output:
        folder = os.path.dirname(os.path.abspath(output))
        if os.path.isdir(output):
            return f"--output {output} is a folder; give a file name, e.g. {output}/ages.csv"
        if not os.path.isdir(folder):
            return f"--output {output}: folder {folder} does not exist; create it first"
    if draw_folder and os.path.exists(draw_folder) and not os.path.isdir(draw_folder):
        return f"--draw {draw_folder} is a file, not a folder; give a folder for the drawings"
    return ""


def main(argv) -> int:
    """absl entry point: exit 0 when every input was read, 1 when some was not, 2 on bad
    flags or model. The flags, and whether any input exists, are checked before
    TensorFlow is imported (seconds, not the minute TensorFlow may take on a loaded
    machine)."""
    from absl import flags

    values = flags.FLAGS
    paths = argv[1:]
    problem = _flag_problem(values, paths)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    skipped, duplicates = [], []
    inputs = expand_inputs(paths, videos=values.video_stride > 0, skipped=skipped,
                           duplicates=duplicates)
    if missing := nothing_to_predict(inputs):  # said before the model loads
        print("\n".join(missing), file=sys.stderr)
        return 1
    cli.import_tensorflow_quietly()
    from tfdldl.api import resolve_model
    from tfdldl.inference import ModelLoadError, aligner_for, load_predictor

    try:
        predictor = load_predictor(resolve_model(values.model))
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe_model(predictor), file=sys.stderr)
    aligner = aligner_for(predictor, min_face_size=values.min_face_size,
                          max_side=values.max_side)
    root = common_root([item for item in inputs if isinstance(item, str)])
    stream = open(values.output, "w", encoding="utf-8", newline="") if values.output else sys.stdout
    tally, start = Tally(skipped=skipped), time.monotonic()
    progress = Progress(len(inputs), values.progress, stream)
    try:
        writer = RowWriter(stream, output_format(values.output, values.format,
                                                 values["format"].present),
                           predictor.label_space.name,
                           [categorical_head_of(output) for output in predictor.class_names])
        for frame, rows in predict_paths(inputs, predictor, aligner, values.batch_size,
                                         values.video_stride, values.aligned,
                                         values.interval, flip=not values.no_flip):
            progress.write_rows(writer, rows)
            progress.advance(rows[0].file)
            tally.add(frame, rows)
            if values.draw and frame is not None:
                draw(frame, rows, values.draw, predictor.label_space.name, root)
    finally:
        progress.close()
        if values.output:
            stream.close()
    print(tally.line(time.monotonic() - start) + duplicates_note(duplicates)
          + (f"; rows in {values.output}" if values.output else "")
          + (f"; drawings in {values.draw}" if values.draw else ""), file=sys.stderr)
    return 1 if tally.errors else 0


def define_flags() -> None:
    """The command-line flags of ``python -m tfdldl.predict``."""
    from absl import flags

    flags.DEFINE_string("model", None, "SavedModel folder (saved_models/<name>/<version>, or "
                        "saved_models/<name> for its highest version) or .keras file. "
                        "Default: the model shipped with tfdldl, "
                        "saved_models/utkface_tinyagenet.")
    flags.DEFINE_enum("format", "table", list(FORMATS),
                      "Output format; left out, an --output file named .csv or .jsonl gets "
                      "that format, anything else the table.")
    flags.DEFINE_string("output", None, "Write rows to this file instead of stdout.")
    flags.DEFINE_string("draw", None, "Folder for copies of the photos with boxes and values.")
    flags.DEFINE_integer("batch_size", 32, "Pictures detected together, and faces per "
                         "forward pass of the model.")
    flags.DEFINE_integer("video_stride", 0, "Read videos, keeping every Nth frame "
                         "(0: videos are not read).")
    flags.DEFINE_bool("aligned", False, "Inputs are aligned faces: no detection.")
    flags.DEFINE_integer("min_face_size", None, "Smallest face to detect, pixels of the "
                         "photo. Default: 1/16 of each photo's shorter side, at least 20.")
    flags.DEFINE_integer("max_side", 1024, "Faces are detected on a copy of each photo whose "
                         "longer side is at most this many pixels (crops are cut from the "
                         "full photo). For small faces in huge photos raise it and give a "
                         "small --min_face_size; detection time grows with the copy's area.")
    flags.DEFINE_float("interval", 0.9, "Probability inside the reported interval.")
    flags.DEFINE_bool("no_flip", False, "Do not average each face with its mirror image "
                      "(by default, as the paper tests, every face is predicted twice).")
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr for several inputs.")


def run() -> None:
    """Console-script entry point (``tfdldl-predict``)."""
    cli.run_main(main, define_flags)  # main imports TensorFlow once the flags are checked


if __name__ == "__main__":
    run()

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
confidence. A photo without a face gets one "no_face" row; an unreadable file or an empty
folder gets one "error" row with the reason, and the other inputs go on. A progress bar
(stderr) follows a run over many files, and a summary line ends it.

Exit status: 0 every input was read; 1 some input could not be read (see its "error" row);
2 bad flags or model.

``--aligned`` skips detection for inputs that are already aligned faces (each whole image,
centre-cropped to a square, is one face). Videos (by extension) contribute every
``--video_stride``-th frame, named ``clip.mp4#frame=120``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import json
import math
import os
import sys
import time
from typing import IO, Iterator, Sequence

import numpy as np

from tfdldl import cli
from tfdldl.calibration import calibrate_outputs
from tfdldl.image_io import IMAGE_EXTENSIONS, ImageReadError, read_rgb
from tfdldl.inference import Predictor, central_interval, predict_flip_averaged

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
FORMATS = ("table", "jsonl", "csv")
STATUS_FACE, STATUS_NO_FACE, STATUS_ERROR = "ok", "no_face", "error"
# With --aligned, images whose shorter side is below this share of the model's face size
# get a warning: upsampled that far, they carry little of what the model saw in training.
SMALL_FACE_SHARE = 0.25


@dataclasses.dataclass
class FaceRow:
    """One line of the report.

    Attributes:
      file: the input (a path, or ``path#frame=N`` for a video frame).
      status: "ok" (a face), "no_face" or "error".
      face: index of the face in its photo, 0 = most confident (None unless status "ok").
      x, y, width, height: the detection box in the photo, pixels.
      value: the prediction (years for age).
      stddev: standard deviation of the predicted distribution, label units.
      low, high: central interval of the predicted distribution holding ``interval_mass``
        (of the calibrated distribution when the model stores a temperature).
      confidence: the face detector's probability, 0..1 (None with --aligned).
      message: the reason for an "error" row; a warning on an unreliable "ok" row.
    """

    file: str
    status: str
    face: int | None = None
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    value: float | None = None
    stddev: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    message: str = ""


@dataclasses.dataclass
class Frame:
    """A decoded picture to look for faces in: a photo, or one video frame."""

    name: str
    rgb: np.ndarray


@dataclasses.dataclass
class InputError:
    """An input that yielded no picture, with the reason."""

    name: str
    message: str


# -- inputs ------------------------------------------------------------------------------

def _is_media(path: str, videos: bool) -> bool:
    extension = os.path.splitext(path)[1].lower()
    return extension in IMAGE_EXTENSIONS or (videos and extension in VIDEO_EXTENSIONS)


def expand_inputs(arguments: Sequence[str], videos: bool) -> list[str | InputError]:
    """Turn command-line arguments into a list of files, in argument order.

    A file is taken as given, whatever its extension (a non-image is then reported by
    the reader); a folder contributes its images (and videos when ``videos``), searched
    recursively and sorted; anything else is a glob pattern (``**`` recursive). A folder
    or pattern that yields nothing becomes an :class:`InputError`.
    """
    wanted = IMAGE_EXTENSIONS + (VIDEO_EXTENSIONS if videos else ())
    expanded: list[str | InputError] = []
    for argument in arguments:
        if os.path.isfile(argument):
            expanded.append(argument)
        elif os.path.isdir(argument):
            found = sorted(os.path.join(root, name)
                           for root, _, names in os.walk(argument) for name in names
                           if _is_media(name, videos))
            expanded.extend(found or [InputError(argument, (
                f"folder contains no images (looked recursively for "
                f"{', '.join(wanted)})"))])
        else:
            found = sorted(path for path in glob.glob(argument, recursive=True)
                           if os.path.isfile(path))
            expanded.extend(found or [InputError(argument, (
                "no such file or folder" if not glob.has_magic(argument)
                else "the pattern matches no file"))])
    return expanded


def read_frames(path: str, video_stride: int) -> Iterator[Frame | InputError]:
    """The pictures of one input file: the photo, or every ``video_stride``-th video frame."""
    if os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS:
        if video_stride > 0:
            yield from _video_frames(path, video_stride)
        else:
            yield InputError(path, "this is a video: pass --video_stride N to predict on "
                                   "every Nth frame")
        return
    try:
        yield Frame(path, read_rgb(path))
    except ImageReadError as error:
        yield InputError(path, error.reason)


def _video_frames(path: str, stride: int) -> Iterator[Frame | InputError]:
    import cv2

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        yield InputError(path, "OpenCV cannot open this video (unknown codec or not a video)")
        return
    index = 0
    read_any = False
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            read_any = True
            if index % stride == 0:
                yield Frame(f"{path}#frame={index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if not read_any:
        yield InputError(path, "the video has no readable frame")


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


def _predict_in_batches(predictor: Predictor, crops: list[np.ndarray],
                        batch_size: int, flip: bool = True) -> dict[str, np.ndarray]:
    """Model outputs for uint8 [S, S, 3] crops, ``batch_size`` faces per forward pass,
    each averaged with its mirror image when ``flip`` (the paper's test protocol)."""
    run = (lambda images: predict_flip_averaged(predictor, images)) if flip \
        else predictor.predict_images
    parts = [run(np.stack(crops[start:start + batch_size]).astype(np.float32))
             for start in range(0, len(crops), batch_size)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]} if parts else {}


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
    faces = _faces_of(frames, aligner, aligned, timings)
    crops = [crop for per_frame in faces for _, _, crop in per_frame]
    with _stage(timings, "model"):
        outputs = calibrate_outputs(_predict_in_batches(predictor, crops, batch_size, flip),
                                    predictor.temperature, predictor.label_space.grid)
    if "distribution" in outputs:
        low, high = central_interval(outputs["distribution"], predictor.label_space.grid,
                                     interval_mass)
    rows, position = [], 0
    for frame, per_frame in zip(frames, faces):
        if not per_frame:
            rows.append([FaceRow(frame.name, STATUS_NO_FACE)])
            continue
        frame_rows = []
        for index, (box, confidence, _) in enumerate(per_frame):
            has_interval = "distribution" in outputs
            frame_rows.append(FaceRow(
                frame.name, STATUS_FACE, face=index,
                x=box[0], y=box[1], width=box[2], height=box[3],
                value=float(outputs["value"][position]),
                stddev=_finite(outputs["stddev"][position]),
                low=float(low[position]) if has_interval else None,
                high=float(high[position]) if has_interval else None,
                confidence=confidence,
                message=_size_warning(frame, predictor.face_size) if aligned else ""))
            position += 1
        rows.append(frame_rows)
    return rows


def _size_warning(frame: Frame, face_size: int) -> str:
    """A warning for an --aligned image far smaller than the model's faces, else ""."""
    height, width = frame.rgb.shape[:2]
    if min(height, width) >= SMALL_FACE_SHARE * face_size:
        return ""
    return (f"warning: a {width}x{height} px image is far smaller than the {face_size} px "
            "faces the model was trained on; this prediction is unreliable")


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def predict_paths(arguments: Sequence[str], predictor: Predictor, aligner,
                  batch_size: int = 32, video_stride: int = 0, aligned: bool = False,
                  interval_mass: float = 0.9, timings: dict[str, float] | None = None,
                  flip: bool = True
                  ) -> Iterator[tuple[Frame | None, list[FaceRow]]]:
    """Predict every face in ``arguments`` (files, folders, globs, videos).

    ``batch_size`` pictures are detected together and ``batch_size`` faces go through
    the model together. ``timings``, when given, collects the seconds spent per stage
    (:data:`STAGES`: reading and decoding, detection, alignment, model). ``flip``
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

    for chunk in _chunks(pictures(), batch_size):
        frames = [item for item in chunk if isinstance(item, Frame)]
        predicted = iter(predict_frames(frames, predictor, aligner, aligned, interval_mass,
                                        batch_size, timings, flip) if frames else [])
        for item in chunk:
            if isinstance(item, InputError):
                yield None, [FaceRow(item.name, STATUS_ERROR, message=item.message)]
            else:
                yield item, next(predicted)


# -- output ------------------------------------------------------------------------------

FIELDS = [field.name for field in dataclasses.fields(FaceRow)]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


class RowWriter:
    """Writes rows as an aligned text table, JSON lines or CSV to ``stream``."""

    def __init__(self, stream: IO[str], kind: str, value_name: str = "value"):
        if kind not in FORMATS:
            raise ValueError(f"unknown format '{kind}'; choose one of {', '.join(FORMATS)}")
        self.stream, self.kind, self.value_name = stream, kind, value_name
        self._csv = None
        if kind == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=FIELDS)
            self._csv.writeheader()
        elif kind == "table":
            self._table_line(["face", "x", "y", "w", "h", value_name, "std", "interval",
                              "conf", "status", "file"])

    def _table_line(self, cells: list[str]) -> None:
        """Fixed-width numeric columns first, the file (of any length) last."""
        widths = [4, 6, 6, 6, 6, 7, 6, 13, 5, 7]
        fixed = " ".join(cell.rjust(width) if i < 9 else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths)))
        self.stream.write(f"{fixed} {cells[-1]}".rstrip() + "\n")

    def write(self, row: FaceRow) -> None:
        """Write one row."""
        data = dataclasses.asdict(row)
        if self.kind == "jsonl":
            self.stream.write(json.dumps(data) + "\n")
        elif self.kind == "csv":
            self._csv.writerow({key: "" if value is None else value for key, value in data.items()})
        else:
            interval = ("" if row.low is None else f"[{row.low:g}, {row.high:g}]")
            confidence = "" if row.confidence is None else f"{row.confidence:.3f}"
            where = row.file + (f"  ({row.message})" if row.message else "")
            self._table_line([_cell(row.face), _cell(row.x), _cell(row.y), _cell(row.width),
                              _cell(row.height), _cell(row.value), _cell(row.stddev),
                              interval, confidence, row.status, where])
        self.stream.flush()


def common_root(files: Sequence[str]) -> str:
    """The deepest folder holding every one of ``files`` (absolute; "" for no files)."""
    folders = [os.path.dirname(os.path.abspath(path)) for path in files]
    return os.path.commonpath(folders) if folders else ""


def drawing_name(source: str, root: str = "") -> str:
    """The file name (no folder, no extension) a drawing of ``source`` gets.

    ``source``'s path below ``root`` (its own folder when root is ""), with folder
    separators as "__" and no leading dot, so drawings of ``../photos/a/b.jpg`` are visible
    files (``a__b``), never hidden ones.
    """
    source = os.path.abspath(source)
    relative = os.path.relpath(source, root) if root else os.path.basename(source)
    parts = [part for part in os.path.normpath(relative).split(os.sep)
             if part not in ("", ".", "..")]
    return os.path.splitext("__".join(parts))[0].lstrip(".") or "image"


def draw(frame: Frame, rows: Sequence[FaceRow], out_dir: str, value_name: str = "age",
         root: str = "") -> str:
    """Write ``frame`` with each face's box and ``value ± stddev`` drawn, as a JPEG in ``out_dir``.

    Args:
      root: the folder that inputs are named relative to (:func:`drawing_name`).
    Returns:
      The written path.
    """
    import cv2

    image = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for row in rows:
        if row.status != STATUS_FACE:
            cv2.putText(image, "no face", (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                        (0, 0, 255), thickness, cv2.LINE_AA)
            continue
        top_left = (round(row.x), round(row.y))
        bottom_right = (round(row.x + row.width), round(row.y + row.height))
        cv2.rectangle(image, top_left, bottom_right, (0, 255, 0), thickness)
        label = f"{value_name} {row.value:.0f}" + ("" if row.stddev is None
                                                   else f" +/-{row.stddev:.0f}")
        scale = max(0.35, row.width / 350.0)
        (text_width, text_height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX,
                                                       scale, thickness)
        origin = (max(0, min(top_left[0], image.shape[1] - text_width)),
                  max(text_height + 2, top_left[1] - 4))
        cv2.rectangle(image, (origin[0], origin[1] - text_height - 2),
                      (origin[0] + text_width, origin[1] + 2), (0, 0, 0), -1)
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0),
                    thickness, cv2.LINE_AA)
    os.makedirs(out_dir, exist_ok=True)
    source, _, frame_number = frame.name.partition("#frame=")
    flat = drawing_name(source, root)
    suffix = f"_frame{int(frame_number):06d}" if frame_number else ""
    path = os.path.join(out_dir, flat + suffix + ".jpg")
    cv2.imwrite(path, image)
    return path


# -- command line ------------------------------------------------------------------------

class Progress:
    """A tqdm bar over input files on stderr (off for fewer than 2 inputs or ``enabled=False``).

    Rows written to a terminal go through :meth:`write_rows` so the bar stays below them.
    """

    def __init__(self, total: int, enabled: bool, stream: IO[str]):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="photo", disable=not enabled or total < 2,
                        file=sys.stderr, dynamic_ncols=True, leave=False)
        self.stream = stream
        self._last_file = None

    def advance(self, name: str) -> None:
        """Count ``name``'s file (once per file, however many video frames it yields)."""
        source = name.partition("#frame=")[0]
        if source != self._last_file:
            self._last_file = source
            self.bar.update(1)

    def write_rows(self, writer: "RowWriter", rows: Sequence[FaceRow]) -> None:
        """Write rows, clearing the bar around them when both share a terminal."""
        import contextlib

        from tqdm import tqdm

        shared = not self.bar.disable and self.stream.isatty()
        with (tqdm.external_write_mode(file=sys.stderr) if shared else contextlib.nullcontext()):
            for row in rows:
                writer.write(row)

    def close(self) -> None:
        self.bar.close()


@dataclasses.dataclass
class Tally:
    """What a run did, for its summary line."""

    pictures: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0

    def add(self, frame: Frame | None, rows: Sequence[FaceRow]) -> None:
        self.pictures += frame is not None
        self.faces += sum(row.status == STATUS_FACE for row in rows)
        self.no_face += sum(row.status == STATUS_NO_FACE for row in rows)
        self.errors += sum(row.status == STATUS_ERROR for row in rows)

    def line(self, seconds: float) -> str:
        rate = self.pictures / seconds if seconds > 0 else 0.0
        return (f"{self.pictures} photo(s), {self.faces} face(s), {self.no_face} without a "
                f"face, {self.errors} error(s) in {seconds:.1f} s ({rate:.2f} photos/s)")


def describe_model(predictor: Predictor) -> str:
    """One line naming the loaded model, its version and whether its intervals are calibrated."""
    relative = os.path.relpath(predictor.source)
    shown = predictor.source if relative.startswith("..") else relative
    folder, version = os.path.split(os.path.normpath(predictor.source))
    where = (f"{shown} (version {version} of {os.path.basename(folder)})"
             if version.isdigit() else shown)
    space = predictor.label_space
    calibration = (f"intervals calibrated, temperature {predictor.temperature:.3g}"
                   if predictor.temperature != 1.0 else "intervals not calibrated")
    return f"model: {where}; {space.name} {space.minimum:g}..{space.maximum:g}; {calibration}"


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
    return ""


def main(argv) -> int:
    """absl entry point: exit 0 when every input was read, 1 when some was not, 2 on bad
    flags or model."""
    import time

    from absl import flags

    from tfdldl.api import resolve_model
    from tfdldl.inference import ModelLoadError, aligner_for, load_predictor

    values = flags.FLAGS
    paths = argv[1:]
    problem = _flag_problem(values, paths)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(resolve_model(values.model))
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe_model(predictor), file=sys.stderr)
    aligner = aligner_for(predictor, min_face_size=values.min_face_size,
                          max_side=values.max_side)
    inputs = expand_inputs(paths, videos=values.video_stride > 0)
    root = common_root([item for item in inputs if isinstance(item, str)])
    stream = open(values.output, "w", encoding="utf-8", newline="") if values.output else sys.stdout
    tally, start = Tally(), time.monotonic()
    progress = Progress(len(inputs), values.progress, stream)
    try:
        writer = RowWriter(stream, values.format, predictor.label_space.name)
        for frame, rows in predict_paths(paths, predictor, aligner, values.batch_size,
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
    print(tally.line(time.monotonic() - start)
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
    flags.DEFINE_enum("format", "table", list(FORMATS), "Output format.")
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
    cli.run_main(main, define_flags, needs_tensorflow=True)


if __name__ == "__main__":
    run()

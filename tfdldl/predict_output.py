"""What tfdldl.predict writes: report rows (table, JSON lines, CSV), drawings, progress, summary.

One :class:`FaceRow` per face (or one "no_face" / "error" row per picture) goes through a
:class:`RowWriter`; :func:`draw` writes a copy of a picture with its boxes and values;
:class:`Progress` and :class:`Tally` give the progress bar and the summary line.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import sys
from typing import IO, TYPE_CHECKING, Sequence

from tfdldl.output_names import CONFIDENCE_SUFFIX
from tfdldl.predict_inputs import VIDEO_EXTENSIONS, Frame

if TYPE_CHECKING:
    from tfdldl.inference import Predictor

FORMATS = ("table", "jsonl", "csv")
STATUS_FACE, STATUS_NO_FACE, STATUS_ERROR = "ok", "no_face", "error"


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
      classes: {categorical head name: (its most probable class name, that class's
        predicted probability 0..1)} (a model with categorical heads); written as the
        columns ``<name>`` and ``<name>_confidence`` (e.g. ``gender``,
        ``gender_confidence``), before ``message``.
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
    classes: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)


# The columns of every row (the categorical heads' go before "message").
FIELDS = [field.name for field in dataclasses.fields(FaceRow) if field.name != "classes"]


def class_fields(head: str) -> tuple[str, str]:
    """The columns a categorical head adds: its most probable class and that probability."""
    return head, head + CONFIDENCE_SUFFIX


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _probability(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def face_label(row: FaceRow, value_name: str = "age") -> str:
    """The text drawn above a face: "age 33 +/-4", then "female 0.930" per categorical head."""
    return " ".join(_label_parts(row, value_name))


def _label_parts(row: FaceRow, value_name: str) -> list[str]:
    """:func:`face_label`'s parts: the value, then one per categorical head."""
    value = f"{value_name} {row.value:.0f}" + ("" if row.stddev is None
                                               else f" +/-{row.stddev:.0f}")
    return [value, *(f"{name} {_probability(confidence)}"
                     for name, confidence in row.classes.values())]


def label_lines(row: FaceRow, value_name: str, width: int, scale: float,
                thickness: int) -> list[str]:
    """The lines :func:`draw` writes above a face: :func:`face_label` on one line when it
    is at most ``width`` pixels wide (cv2's simplex font at ``scale``, ``thickness``), else
    one line per part (the value, then each categorical head), so that no head's class is
    cut off at the photo's edge (a 200 px chip with gender and race)."""
    import cv2

    label = face_label(row, value_name)
    fits = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] <= width
    return [label] if fits else _label_parts(row, value_name)


class RowWriter:
    """Writes rows as an aligned text table, JSON lines or CSV to ``stream``.

    Args:
      stream: where the rows go.
      kind: one of :data:`FORMATS`.
      value_name: the table's heading of the value column ("age").
      categorical: the model's categorical heads' names: each adds its
        :func:`class_fields` columns; () gives the rows of an age-only model.
    Raises:
      ValueError: an unknown kind.
    """

    def __init__(self, stream: IO[str], kind: str, value_name: str = "value",
                 categorical: Sequence[str] = ()):
        if kind not in FORMATS:
            raise ValueError(f"unknown format '{kind}'; choose one of {', '.join(FORMATS)}")
        self.stream, self.kind, self.value_name = stream, kind, value_name
        self.categorical = tuple(categorical)
        self.fields = [*FIELDS[:-1], *(field for head in self.categorical
                                       for field in class_fields(head)), FIELDS[-1]]
        self._csv = None
        if kind == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=self.fields)
            self._csv.writeheader()
        elif kind == "table":
            self._table_line(["face", "x", "y", "w", "h", value_name, "std", "interval",
                              "conf", *(cell for head in self.categorical
                                        for cell in (head, f"{head[0]}.conf")),
                              "status", "file"])

    def _table_line(self, cells: list[str]) -> None:
        """Fixed-width numeric columns first, the file (of any length) last."""
        widths = [4, 6, 6, 6, 6, 7, 6, 13, 5,
                  *(width for head in self.categorical for width in (max(8, len(head)), 6)),
                  7]
        fixed = " ".join(cell.rjust(width) if i < len(widths) - 1 else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths)))
        self.stream.write(f"{fixed} {cells[-1]}".rstrip() + "\n")

    def write(self, row: FaceRow) -> None:
        """Write one row."""
        data = {name: getattr(row, name) for name in FIELDS}
        for head in self.categorical:
            data.update(zip(class_fields(head), row.classes.get(head, (None, None))))
        data = {name: data[name] for name in self.fields}
        if self.kind == "jsonl":
            self.stream.write(json.dumps(data) + "\n")
        elif self.kind == "csv":
            self._csv.writerow({key: "" if value is None else value for key, value in data.items()})
        else:
            interval = ("" if row.low is None else f"[{row.low:g}, {row.high:g}]")
            where = row.file + (f"  ({row.message})" if row.message else "")
            classes = []
            for head in self.categorical:
                name, confidence = row.classes.get(head, ("", None))
                classes += [name, _probability(confidence)]
            self._table_line([_cell(row.face), _cell(row.x), _cell(row.y), _cell(row.width),
                              _cell(row.height), _cell(row.value), _cell(row.stddev),
                              interval, _probability(row.confidence), *classes, row.status,
                              where])
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
    """Write ``frame`` with each face's box and :func:`face_label` drawn, as a JPEG in ``out_dir``.

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
        scale = max(0.35, row.width / 350.0)
        lines = label_lines(row, value_name, image.shape[1], scale, thickness)
        sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0]
                 for line in lines]
        step = max(height for _, height in sizes) + 6
        bottom = max(step * len(lines) - 4, top_left[1] - 4)  # the last line's baseline
        for i, (line, (text_width, text_height)) in enumerate(zip(lines, sizes)):
            origin = (max(0, min(top_left[0], image.shape[1] - text_width)),
                      bottom - step * (len(lines) - 1 - i))
            cv2.rectangle(image, (origin[0], origin[1] - text_height - 2),
                          (origin[0] + text_width, origin[1] + 2), (0, 0, 0), -1)
            cv2.putText(image, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0),
                        thickness, cv2.LINE_AA)
    os.makedirs(out_dir, exist_ok=True)
    if frame.video_frame is None:
        flat, suffix = drawing_name(frame.name, root), ""
    else:
        flat = drawing_name(frame.name.rpartition("#frame=")[0], root)
        suffix = f"_frame{frame.video_frame:06d}"
    path = os.path.join(out_dir, flat + suffix + ".jpg")
    cv2.imwrite(path, image)
    return path


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
        from tqdm import tqdm

        shared = not self.bar.disable and self.stream.isatty()
        with (tqdm.external_write_mode(file=sys.stderr) if shared else contextlib.nullcontext()):
            for row in rows:
                writer.write(row)

    def close(self) -> None:
        self.bar.close()


@dataclasses.dataclass
class Tally:
    """What a run did, for its summary line.

    Attributes:
      pictures: photos and video frames read (the summary's "photo(s)").
      video_frames: the video frames among them.
      faces, no_face, errors: rows of each status.
      skipped: files inside the given folders that were not read (not images, or videos
        without --video_stride), listed by :func:`skipped_note`.
    """

    pictures: int = 0
    video_frames: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    skipped: Sequence[str] = ()

    def add(self, frame: Frame | None, rows: Sequence[FaceRow]) -> None:
        self.pictures += frame is not None
        self.video_frames += frame is not None and frame.video_frame is not None
        self.faces += sum(row.status == STATUS_FACE for row in rows)
        self.no_face += sum(row.status == STATUS_NO_FACE for row in rows)
        self.errors += sum(row.status == STATUS_ERROR for row in rows)

    def line(self, seconds: float) -> str:
        rate = self.pictures / seconds if seconds > 0 else 0.0
        frames = (f"; {self.video_frames} of the photo(s) are video frames"
                  if self.video_frames else "")
        return (f"{self.pictures} photo(s), {self.faces} face(s), {self.no_face} without a "
                f"face, {self.errors} error(s) in {seconds:.1f} s ({rate:.2f} photos/s)"
                + frames + skipped_note(self.skipped))


def skipped_note(skipped: Sequence[str]) -> str:
    """"; N file(s) in the folders skipped ..." naming up to 3 of ``skipped``, or ""."""
    if not skipped:
        return ""
    shown = ", ".join(skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    videos = any(os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS for path in skipped)
    return (f"; {len(skipped)} file(s) in the folders skipped, not images ({shown}{more})"
            + ("; videos are read with --video_stride N" if videos else ""))


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

"""The pictures tfdldl.predict reads: photos, folders, globs and video frames.

:func:`expand_inputs` turns command-line arguments into files, :func:`read_frames` turns
a file into decoded pictures (:class:`Frame`), and anything unreadable becomes an
:class:`InputError` with the reason, so one bad input never stops a run.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Iterator, Sequence

import numpy as np

from tfdldl.image_io import IMAGE_EXTENSIONS, ImageReadError, read_rgb

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclasses.dataclass
class Frame:
    """A decoded picture to look for faces in: a photo, or one video frame.

    Attributes:
      name: the path, or ``path#frame=N`` for a video frame.
      rgb: uint8 [H, W, 3] RGB.
      video_frame: N for a video frame, None for a photo (whatever its name holds).
    """

    name: str
    rgb: np.ndarray
    video_frame: int | None = None


@dataclasses.dataclass
class InputError:
    """An input that yielded no picture, with the reason."""

    name: str
    message: str


def _is_media(path: str, videos: bool) -> bool:
    extension = os.path.splitext(path)[1].lower()
    return extension in IMAGE_EXTENSIONS or (videos and extension in VIDEO_EXTENSIONS)


def expand_inputs(arguments: Sequence[str | InputError], videos: bool,
                  skipped: list[str] | None = None,
                  duplicates: list[str] | None = None) -> list[str | InputError]:
    """Turn command-line arguments into a list of files, in argument order.

    A file is taken as given, whatever its extension (a non-image is then reported by
    the reader); a folder contributes its images (and videos when ``videos``), searched
    recursively and sorted; anything else is a glob pattern (``**`` recursive). A folder
    or pattern that yields nothing becomes an :class:`InputError`; an InputError among
    the arguments is kept as it is (so an expanded list expands to itself). The folders'
    other files (by extension) are appended, sorted, to ``skipped`` when it is given.

    A file reached more than once (given and inside a given folder, matched by two
    patterns, or through a link: the same resolved path) is kept where it first appears;
    the names it had later are appended to ``duplicates`` when that is given.
    """
    wanted = IMAGE_EXTENSIONS + (VIDEO_EXTENSIONS if videos else ())
    expanded: list[str | InputError] = []
    seen: set[str] = set()

    def add(paths: list[str]) -> None:
        for path in paths:
            resolved = os.path.realpath(path)
            if resolved not in seen:
                seen.add(resolved)
                expanded.append(path)
            elif duplicates is not None:
                duplicates.append(path)

    for argument in arguments:
        if isinstance(argument, InputError):
            expanded.append(argument)
        elif os.path.isfile(argument):
            add([argument])
        elif os.path.isdir(argument):
            files = sorted(os.path.join(root, name)
                           for root, _, names in os.walk(argument) for name in names)
            found = [path for path in files if _is_media(path, videos)]
            if skipped is not None:
                skipped.extend(path for path in files if not _is_media(path, videos))
            add(found)
            if not found:
                expanded.append(InputError(argument, (
                    f"folder contains no images (looked recursively for "
                    f"{', '.join(wanted)})")))
        else:
            found = sorted(path for path in glob.glob(argument, recursive=True)
                           if os.path.isfile(path))
            add(found)
            if not found:
                expanded.append(InputError(argument, (
                    "no such file or folder" if not glob.has_magic(argument)
                    else "the pattern matches no file")))
    return expanded


def nothing_to_predict(inputs: Sequence[str | InputError]) -> list[str]:
    """When no item of ``inputs`` (:func:`expand_inputs`' list) is a file, every one being
    missing or an empty folder or pattern: an error line for each; else []."""
    if any(isinstance(item, str) for item in inputs):
        return []
    return [f"error: {item.name}: {item.message}; nothing to predict" for item in inputs]


def duplicates_note(duplicates: Sequence[str]) -> str:
    """The summary's note on the files :func:`expand_inputs` reached twice and kept once
    (its ``duplicates``), naming up to 3 of them; "" without any."""
    if not duplicates:
        return ""
    more = f" and {len(duplicates) - 3} more" if len(duplicates) > 3 else ""
    return (f"; {len(duplicates)} input(s) given twice, predicted once "
            f"({', '.join(duplicates[:3])}{more})")


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
                yield Frame(f"{path}#frame={index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                            video_frame=index)
            index += 1
    finally:
        capture.release()
    if not read_any:
        yield InputError(path, "the video has no readable frame")


"""One shard of a build: read, align, encode and write its planned records, then a sidecar.

A shard's membership is decided before any alignment (data_prep.build plans every
shard), so each shard is an independent unit of parallel work and of resuming: a shard
whose sidecar has the same fingerprint (settings, members, and the SHA-256 of each
member's source file) and whose file still has the size and SHA-256 the sidecar recorded
is finished and is not redone; anything else (a source replaced in place, a shard cut
short, flipped or copied in from another build) is rebuilt. The sidecar (``.build/<shard>.json``) keeps what the manifest needs about the
shard (faces written, their alignment, every skip), so the manifest can be written after
a resumed build without aligning anything again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Optional, Sequence

import cv2
import numpy as np

from data_prep.adapters.base import Record
from tfdldl import example_schema
from tfdldl.face_align import FaceAligner, Framing
from tfdldl.image_io import ImageReadError, read_rgb
from tfdldl.jsonio import write_json
from tfdldl.label_space import LabelSpace
from tfdldl.safe_io import file_sha256

SIDECAR_DIR = ".build"
# Images read, detected and encoded together inside a shard (bounds memory).
CHUNK = 64
ALIGNED, CENTER_CROP = "aligned", "center_crop"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything besides the records that determines a shard's bytes.

    Attributes:
      label_space: LabelSpace.to_dict() of the distributions' grid.
      output_size, min_face_size, thresholds, scale_factor, max_side: FaceAligner's.
      framing: Framing.to_dict() of the aligned crops.
      on_no_face: "skip" or "center_crop".
      jpeg_quality: quality of the stored JPEGs.
    """

    label_space: dict
    output_size: int
    min_face_size: int
    thresholds: tuple
    scale_factor: float
    max_side: int
    framing: dict
    on_no_face: str
    jpeg_quality: int

    def aligner(self) -> FaceAligner:
        """A FaceAligner with these settings."""
        return FaceAligner(self.output_size, self.min_face_size, self.thresholds,
                           self.scale_factor, self.max_side, Framing.from_dict(self.framing))


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """Shard ``index`` of ``count`` of ``split``, with its planned records (``items``) and
    settings."""

    split: str
    index: int
    count: int
    items: tuple[Record, ...]
    settings: Settings

    @property
    def name(self) -> str:
        """The shard's file name."""
        return example_schema.shard_name(self.split, self.index, self.count)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of everything that determines the shard's content: the settings,
        the shard's place, and each planned record (with the SHA-256 of its source bytes)."""
        payload = json.dumps([dataclasses.asdict(self.settings), self.split, self.index,
                              self.count, [_fingerprint_row(item) for item in self.items],
                              example_schema.SCHEMA_VERSION], sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# A planned record's fields in its shard's fingerprint: these first, in the order of the
# planned-item type that builds used before it merged into Record (so their shards stay
# finished), then every later field; never folder or split, which choose the shard, not
# its bytes.
_FINGERPRINT_FIRST = ("path", "source", "label", "sigma", "subject", "gender", "group",
                      "sha256")
_NOT_FINGERPRINTED = ("folder", "split")


def _fingerprint_row(record: Record) -> list:
    """The values of a planned record that its shard's fingerprint covers."""
    later = tuple(field.name for field in dataclasses.fields(record)
                  if field.name not in _FINGERPRINT_FIRST + _NOT_FINGERPRINTED)
    return [getattr(record, name) for name in _FINGERPRINT_FIRST + later]


def sidecar_path(out_dir: str, shard: str) -> str:
    """Where the sidecar of ``shard`` lives."""
    return os.path.join(out_dir, SIDECAR_DIR, shard + ".json")


def read_finished(task: ShardTask, out_dir: str) -> Optional[dict[str, Any]]:
    """The sidecar of ``task`` if the shard is finished, else None: the sidecar has the
    task's fingerprint, and the shard file (not a link) has the size and SHA-256 it
    recorded (so a damaged or swapped shard is not finished)."""
    shard = os.path.join(out_dir, task.name)
    if not os.path.isfile(shard) or os.path.islink(shard):
        return None
    try:
        with open(sidecar_path(out_dir, task.name), encoding="utf-8") as handle:
            sidecar = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
    if (sidecar.get("fingerprint") != task.fingerprint()
            or sidecar.get("shard_bytes") != os.path.getsize(shard)
            or sidecar.get("shard_sha256") != file_sha256(shard)):
        return None
    return sidecar


def run(task: ShardTask, out_dir: str, aligner: FaceAligner,
        on_progress: Callable[[int, int], None] = lambda done, skipped: None) -> dict[str, Any]:
    """Align the task's items, write its shard atomically, then its sidecar.

    Args:
      task: the shard to build.
      out_dir: the output folder.
      aligner: a FaceAligner built from ``task.settings`` (reused across shards).
      on_progress: called after each chunk with (images done, images skipped) in it.
    Returns:
      The sidecar dict: ``faces`` [source, label, confidence or None, method, coverage]
      per written record, ``skips`` [path, reason, detail] per dropped item.
    """
    from data_prep.tfrecord_writer import write_shard

    examples, faces, skips = [], [], []
    for start in range(0, len(task.items), CHUNK):
        chunk = task.items[start:start + CHUNK]
        chunk_examples, chunk_faces, chunk_skips = align_items(chunk, task.settings, aligner)
        examples += chunk_examples
        faces += chunk_faces
        skips += chunk_skips
        on_progress(len(chunk), len(chunk_skips))
    shard = os.path.join(out_dir, task.name)
    written = write_shard(shard, examples)
    sidecar = {"fingerprint": task.fingerprint(), "split": task.split, "shard": task.name,
               "written": written, "shard_bytes": os.path.getsize(shard),
               "shard_sha256": file_sha256(shard), "faces": faces, "skips": skips}
    path = sidecar_path(out_dir, task.name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, sidecar, indent=None)
    return sidecar


def align_items(items: Sequence[Record], settings: Settings, aligner: FaceAligner
                ) -> tuple[list, list[list], list[list]]:
    """Read, detect (one detector batch), align and encode ``items`` (planned records).

    Shared by the local build (per shard) and the Beam pipeline (per batch of items).

    Returns:
      (examples, faces, skips): a FaceRecord and a face row [source, label, confidence
      or None, method, coverage] per kept item, in order, and [path, reason, detail] per
      dropped one: unreadable_image, no_face, or alignment_error (the item raised while
      being detected, aligned or encoded; the others of the batch are not affected).
    """
    space = LabelSpace.from_dict(settings.label_space)
    examples, faces, skips = [], [], []
    images, readable = [], []
    for item in items:
        try:
            images.append(read_rgb(item.path))
            readable.append(item)
        except ImageReadError as error:
            skips.append([item.path, "unreadable_image", error.reason])
    try:
        detections = aligner.detect_batch(images)
    except Exception:  # one bad image must not sink the batch: detect one by one
        detections = [_detect_one(aligner, image) for image in images]
    for item, image, found in zip(readable, images, detections):
        try:
            if isinstance(found, Exception):
                raise found
            if found:
                face = aligner.align(image, found[0].landmarks)
                confidence, method = found[0].confidence, ALIGNED
                coverage = aligner.coverage(image.shape, found[0].landmarks)
            elif settings.on_no_face == CENTER_CROP:
                face, confidence, method = aligner.center_crop(image), None, CENTER_CROP
                coverage = 1.0
            else:
                skips.append([item.path, "no_face",
                              "MTCNN found no face; lower alignment.min_face_size or, for a "
                              "pre-cropped set, use alignment.on_no_face: center_crop"])
                continue
            jpeg = _encode_jpeg(face, settings.jpeg_quality)
        except Exception as error:  # noqa: BLE001 - counted with its reason, as a skip
            skips.append([item.path, "alignment_error", f"{type(error).__name__}: {error}"])
            continue
        examples.append(item.face(jpeg, settings.output_size,
                                  space.gaussian(np.float32(item.label), item.sigma), coverage))
        faces.append([item.source, item.label, confidence, method, round(coverage, 4)])
    return examples, faces, skips


def _detect_one(aligner: FaceAligner, image: np.ndarray):
    """The detections of one image, or the exception detecting it raised."""
    try:
        return aligner.detect_batch([image])[0]
    except Exception as error:  # noqa: BLE001 - reported per item by align_items
        return error


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode an aligned face as JPEG")
    return encoded.tobytes()

"""Face detection with MTCNN, batched: where the faces of a photo are, best first.

:class:`FaceDetector` is the detecting half of :class:`tfdldl.face_align.FaceAligner`
(which warps the faces it finds onto the alignment template).

Detector: MTCNN from the ``mtcnn`` package (weights ship with it; runs offline), with the
DLDL-v2 settings: stage thresholds 0.6 / 0.7 / 0.7 (PNet, RNet, ONet), pyramid factor
0.709, minimum face 20 px (data_prep gives it explicitly). Its three networks run as
compiled graphs (:mod:`tfdldl.mtcnn_graph`: same weights and box arithmetic as the
package, several times faster). Without a given minimum face (tfdldl.predict's default),
the smallest face searched for is 1/16 of the photo's shorter side, at least 20 px, and
the photo is detected on a copy where that face is 24 px wide: the work per photo is then
the same at any resolution, and photos of one aspect ratio share one batch. Among
several faces the most confident wins; confidences equal to three decimals count as a
tie, broken by the distance of the box centre to the image centre (the photographed
person is usually in the middle).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import cv2
import numpy as np

# PNet looks at 12x12 windows; pyramid levels smaller than this find nothing.
PNET_WINDOW = 12
# Confidences equal to this many decimals are a tie, broken by centrality.
_CONFIDENCE_DECIMALS = 3
# Images of one shape are detected together in batches of this many.
DETECTION_BATCH = 32
# Images of different shapes share a batch when padding them into a common canvas wastes
# at most this share of the canvas.
CANVAS_WASTE = 0.1
# Without a given min_face_size, the smallest face searched for is this share of the
# image's shorter side, and at least MIN_FACE_PIXELS.
MIN_FACE_FRACTION = 1.0 / 16.0
MIN_FACE_PIXELS = 20
# With the relative minimum face, photos are detected on a copy in which that face spans
# this many pixels (MTCNN's own minimum is 20): the copy of any photo whose shorter side
# exceeds 16 x 24 = 384 px has a 384 px shorter side, so photos of one aspect ratio share
# one detection shape and batch together whatever their resolution. Landmarks found on
# such copies differ from full-resolution ones by ~2.7 % of the eye distance, as much as
# between two pyramids on the full photo.
DETECTION_FACE_PIXELS = 24


@dataclasses.dataclass(frozen=True)
class Detection:
    """One face found by MTCNN, in the coordinates of the image given to the detector.

    Attributes:
      box: (x, y, width, height), pixels.
      confidence: ONet's face probability, 0..1.
      landmarks: float32 [5, 2] (x, y): left eye, right eye, nose, left and right mouth
        corner ("left" is the image's left).
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray


class FaceDetector:
    """Detects faces with MTCNN (see the module docstring).

    Args:
      min_face_size: smallest face to look for, pixels of the input image. None (the
        default): :data:`MIN_FACE_FRACTION` of each image's shorter side, at least
        :data:`MIN_FACE_PIXELS` (see :meth:`smallest_face`); the detection cost then no
        longer grows with the photo's resolution. Larger values skip the fine pyramid
        levels: much faster when faces are known to be big (a pre-cropped dataset).
      thresholds: face-probability thresholds of PNet, RNet, ONet.
      scale_factor: ratio between image-pyramid levels.
      max_side: images whose longer side exceeds this are downscaled before detection
        (landmarks are mapped back; a caller cuts crops from the full-resolution image).
        Faces smaller than 12 px in the downscaled copy are not found: for small faces
        in huge photos give a larger ``max_side`` with a small ``min_face_size`` (the
        detection time grows with the copy's area divided by the squared minimum face).
    Raises:
      ValueError: scale_factor outside (0, 1), or not 3 thresholds.
    """

    def __init__(self, min_face_size: int | None = None,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), scale_factor: float = 0.709,
                 max_side: int = 1024):
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must lie in (0, 1), got {scale_factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds needs 3 values (PNet, RNet, ONet), got {thresholds}")
        self.min_face_size = None if min_face_size is None else int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = int(max_side)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in one uint8 RGB [H, W, 3] image, best first (see the module docstring)."""
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each of ``images`` (uint8 RGB [H, W, 3]); one best-first list per image.

        Each image is detected on a copy whose longer side is at most ``max_side``
        (coordinates come back in the image's own pixels). Copies of one shape, and of
        nearly one shape (padded into a common canvas wasting at most
        :data:`CANVAS_WASTE` of its area), go through MTCNN together with one shared
        pyramid: several times faster per image than one call each.
        """
        for image in images:
            check_rgb(image)
        results: list[list[Detection]] = [[] for _ in images]
        copies = [_shrink(image, self._detection_ratio(image.shape)) for image in images]
        for group in _canvas_groups([copy.shape[:2] for copy in copies]):
            rows = self._run_mtcnn([copies[i] for i in group],
                                   min(self._min_face_in_copy(images[i].shape,
                                                              copies[i].shape)
                                       for i in group))
            for position, index in enumerate(group):
                mine = rows[rows[:, 0] == position]
                scale_y = images[index].shape[0] / copies[index].shape[0]
                scale_x = images[index].shape[1] / copies[index].shape[1]
                faces = [Detection(
                    box=(float(row[1] * scale_x), float(row[2] * scale_y),
                         float((row[3] - row[1]) * scale_x), float((row[4] - row[2]) * scale_y)),
                    confidence=float(row[5]),
                    landmarks=np.stack([row[6:11] * scale_x, row[11:16] * scale_y],
                                       axis=1).astype(np.float32)) for row in mine]
                results[index] = _rank(faces, images[index].shape)
        return results

    def smallest_face(self, shape: Sequence[int]) -> float:
        """The smallest face searched for in an image of ``shape`` (H, W, ...), pixels.

        ``min_face_size`` when one was given; otherwise :data:`MIN_FACE_FRACTION` of the
        image's shorter side, but at least :data:`MIN_FACE_PIXELS`.
        """
        if self.min_face_size is not None:
            return float(self.min_face_size)
        return max(float(MIN_FACE_PIXELS), MIN_FACE_FRACTION * min(shape[0], shape[1]))

    def _detection_ratio(self, shape: Sequence[int]) -> float:
        """Scale of the detection copy: its longer side at most max_side and, when the
        smallest face is relative, that face :data:`DETECTION_FACE_PIXELS` wide in it
        (every photo larger than 16 x that is then detected at one size)."""
        ratio = min(1.0, self.max_side / max(shape[0], shape[1]))
        if self.min_face_size is None:
            ratio = min(ratio, DETECTION_FACE_PIXELS / self.smallest_face(shape))
        return ratio

    def _min_face_in_copy(self, shape: Sequence[int], copy_shape: Sequence[int]) -> float:
        # Upsampling the copy beyond PNet's window finds nothing the full image would not.
        ratio = min(copy_shape[0] / shape[0], copy_shape[1] / shape[1])
        return max(float(PNET_WINDOW), self.smallest_face(shape) * ratio)

    def _run_mtcnn(self, batch: list[np.ndarray], min_face: float) -> np.ndarray:
        """MTCNN rows (tfdldl.mtcnn_graph layout) for one batch sharing one pyramid."""
        canvas = np.max([image.shape[:2] for image in batch], axis=0)
        pyramid = pyramid_scales(min(canvas), min_face, self.scale_factor)
        return _graph_mtcnn(self.thresholds).detect(batch, pyramid)


def pyramid_scales(min_side: float, min_face_size: float, scale_factor: float) -> np.ndarray:
    """Image-pyramid scales for MTCNN's PNet, float64 [L].

    Level 0 maps a ``min_face_size`` face onto PNet's 12 px window; each next level is
    ``scale_factor`` smaller; levels stop while the image's shorter side still covers
    12 px. (mtcnn 1.0 counts levels from the image size alone, so with a large minimum
    face its last levels fall below 12 px, PNet fails and a whole batch reports no face.)
    """
    scales = []
    scale = PNET_WINDOW / float(min_face_size)
    while min_side * scale >= PNET_WINDOW:
        scales.append(scale)
        scale *= scale_factor
    return np.asarray(scales, np.float64)


def _rank(faces: list[Detection], shape: tuple[int, ...]) -> list[Detection]:
    """Most confident first; ties (to 3 decimals) go to the face nearest the image centre."""
    centre_y, centre_x = shape[0] / 2.0, shape[1] / 2.0

    def key(face: Detection):
        x, y, w, h = face.box
        distance = np.hypot(x + w / 2 - centre_x, y + h / 2 - centre_y)
        return (-round(face.confidence, _CONFIDENCE_DECIMALS), distance)

    return sorted(faces, key=key)


def _shrink(rgb: np.ndarray, ratio: float) -> np.ndarray:
    if ratio >= 1.0:
        return rgb
    size = (max(1, round(rgb.shape[1] * ratio)), max(1, round(rgb.shape[0] * ratio)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def check_rgb(rgb: np.ndarray) -> None:
    """Raises ValueError unless ``rgb`` is a uint8 [H, W, 3] array of at least 1 x 1 pixels."""
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
            and rgb.shape[2] == 3):
        got = (f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray)
               else type(rgb).__name__)
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {got}; "
                         "read images with tfdldl.image_io.read_rgb")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected an image of at least 1 x 1 pixels, got an empty one "
                         f"{rgb.shape}; check how the array was cut or decoded")


@functools.lru_cache(maxsize=None)
def _graph_mtcnn(thresholds: tuple[float, float, float]):
    """One compiled MTCNN per set of thresholds, shared by every FaceAligner of the
    process (built on first use so that importing this module does not import TensorFlow)."""
    from tfdldl.mtcnn_graph import GraphMTCNN

    return GraphMTCNN(thresholds)


def _canvas_groups(shapes: Sequence[Sequence[int]]) -> list[list[int]]:
    """Indexes of ``shapes`` (H, W) grouped into batches of at most DETECTION_BATCH whose
    common canvas (the largest H and W) wastes at most CANVAS_WASTE of its area on
    padding of any member; similar shapes end up together."""
    order = sorted(range(len(shapes)), key=lambda i: (shapes[i][0], shapes[i][1], i))
    groups: list[list[int]] = []
    canvas = None
    for index in order:
        height, width = shapes[index][:2]
        if groups and len(groups[-1]) < DETECTION_BATCH:
            wider = (max(canvas[0], height), max(canvas[1], width))
            smallest = min(min(shapes[i][0] * shapes[i][1] for i in groups[-1]),
                           height * width)
            if smallest >= (1.0 - CANVAS_WASTE) * wider[0] * wider[1]:
                groups[-1].append(index)
                canvas = wider
                continue
        groups.append([index])
        canvas = (height, width)
    return groups

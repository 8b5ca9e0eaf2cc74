"""Face detection (MTCNN) and 5-point similarity alignment, shared by training data and prediction.

Training faces (data_prep.build) and faces given to a trained model (tfdldl.predict) pass
through this one module with the same template, so the model never sees a framing at
inference that it did not see in training.

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

Framing (the template's field of view): the widely used 5-point ArcFace template for a
112 px crop (eye centres, nose tip, mouth corners), scaled about the crop centre by
:attr:`Framing.scale`, moved down by :attr:`Framing.offset_y` (a fraction of the side;
negative moves the face up) and scaled to ``output_size``. The framing is part of a
model's contract: data_prep records it in the manifest, training copies it into the
exported model, and tfdldl.predict aligns photos with the framing of the model it loads.

:data:`DEFAULT_FRAMING` (scale 1.25, offset -0.16) is the field of view that UTKFace's
200 px chips cover: on 397 random chips the aligned crop lies on average 98.5 % inside
the chip (10th percentile 96 %), with the eyes at 29 % of the crop's height and the mouth
at 74 %, i.e. about 0.64 eye-to-mouth distances of forehead and 0.56 of chin, the most
the chips hold. :data:`LEGACY_FRAMING` (scale 0.80, no offset, black border) is the
framing of models exported before the framing was recorded: a wider field of view that
UTKFace chips covered only 45 % of (black top quarter and side bands).

Border: pixels of a crop that fall outside the source photo cannot be left black: the
model would learn faces floating in black, while users' photos have hair, background
and shoulders there. ``reflect`` mirrors the photo at its edge (cv2.BORDER_REFLECT_101),
``replicate`` repeats the edge pixels, ``black`` is the legacy constant. At one small
training budget (scripts/compare_framings.sh) the mirrored border beat the replicated one
on test MAE (8.30 vs 8.63) and in surroundings (age moved 1.24 vs 1.60 years), so it is the
default. The share of each crop inside its source is :meth:`FaceAligner.coverage`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import cv2
import numpy as np

# ArcFace's 5-point template in a 112x112 crop: left eye, right eye, nose tip, left and
# right mouth corner, (x, y) pixels; "left" is the image's left.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
BORDER_MODES = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE,
                "black": cv2.BORDER_CONSTANT}
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
class Framing:
    """Where the face sits in an aligned crop, and what fills pixels outside the photo.

    Attributes:
      scale: size of the ArcFace 5-point template relative to its 112 px original; larger
        zooms in (a narrower field of view). Eye distance = 0.3146 x scale of the side.
      offset_y: vertical shift of the template, fraction of the crop side; negative moves
        the face up (less forehead, more chin).
      border: "reflect", "replicate" or "black" for crop pixels outside the source photo.
    Raises:
      ValueError: scale outside (0.2, 3], |offset_y| > 0.5, or an unknown border.
    """

    scale: float = 1.25
    offset_y: float = -0.16
    border: str = "reflect"

    def __post_init__(self):
        if not 0.2 < self.scale <= 3.0:
            raise ValueError(f"framing scale must lie in (0.2, 3], got {self.scale}")
        if not -0.5 <= self.offset_y <= 0.5:
            raise ValueError(f"framing offset_y must lie in [-0.5, 0.5], got {self.offset_y}")
        if self.border not in BORDER_MODES:
            raise ValueError(f"framing border must be one of {sorted(BORDER_MODES)}, "
                             f"got {self.border!r}")

    def to_dict(self) -> dict:
        """JSON-ready form, as stored in manifests and exported models."""
        return {"template": "arcface_5pt", "scale": float(self.scale),
                "offset_y": float(self.offset_y), "border": self.border}

    @classmethod
    def from_dict(cls, values: dict | None) -> "Framing":
        """Inverse of :meth:`to_dict`; None or {} (recorded before framings were) is
        :data:`LEGACY_FRAMING`."""
        if not values:
            return LEGACY_FRAMING
        return cls(float(values["scale"]), float(values["offset_y"]), str(values["border"]))

    def describe(self) -> str:
        """One line for messages, e.g. ``scale 1.25, offset_y -0.16, border reflect``."""
        return f"scale {self.scale:g}, offset_y {self.offset_y:+g}, border {self.border}"


DEFAULT_FRAMING = Framing()
LEGACY_FRAMING = Framing(scale=0.80, offset_y=0.0, border="black")


def template(output_size: int, framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """The 5 target landmark positions in an ``output_size`` square crop, float32 [5, 2] (x, y) px."""
    centre = 56.0
    placed = centre + (ARCFACE_TEMPLATE_112 - centre) * framing.scale
    placed[:, 1] += framing.offset_y * 112.0
    return (placed * (output_size / 112.0)).astype(np.float32)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``source`` onto ``target``.

    Umeyama's closed form; no reflection.

    Args:
      source: float [N, 2] points (N >= 2), e.g. detected landmarks, pixels.
      target: float [N, 2] corresponding points, e.g. the template, pixels.
    Returns:
      float64 [2, 3] matrix M with target ≈ M @ [x, y, 1].
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (source_centred ** 2).sum() / len(source)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


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


@dataclasses.dataclass(frozen=True)
class AlignedFace:
    """A detected face warped onto the template.

    Attributes:
      image: uint8 [S, S, 3] RGB, S = the aligner's output_size.
      box: (x, y, width, height) of the detection in the input image, pixels.
      confidence: the detector's face probability, 0..1.
      landmarks: float32 [5, 2] detected landmarks in the input image, pixels.
      coverage: share of the crop's area that lies inside the input image, 0..1.
    """

    image: np.ndarray
    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray
    coverage: float = 1.0


class FaceAligner:
    """Detects faces with MTCNN and aligns them onto :func:`template`.

    Args:
      output_size: side of the aligned square crop, pixels.
      framing: the template's field of view and the border fill (:class:`Framing`).
      min_face_size: smallest face to look for, pixels of the input image. None (the
        default): :data:`MIN_FACE_FRACTION` of each image's shorter side, at least
        :data:`MIN_FACE_PIXELS` (see :meth:`smallest_face`); the detection cost then no
        longer grows with the photo's resolution. Larger values skip the fine pyramid
        levels: much faster when faces are known to be big (a pre-cropped dataset).
      thresholds: face-probability thresholds of PNet, RNet, ONet.
      scale_factor: ratio between image-pyramid levels.
      max_side: images whose longer side exceeds this are downscaled before detection
        (landmarks are mapped back; the crop is cut from the full-resolution image).
        Faces smaller than 12 px in the downscaled copy are not found: for small faces
        in huge photos give a larger ``max_side`` with a small ``min_face_size`` (the
        detection time grows with the copy's area divided by the squared minimum face).
    """

    def __init__(self, output_size: int = 224, min_face_size: int | None = None,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), scale_factor: float = 0.709,
                 max_side: int = 1024, framing: Framing = DEFAULT_FRAMING):
        if output_size < 16:
            raise ValueError(f"output_size must be at least 16 px, got {output_size}")
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must lie in (0, 1), got {scale_factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds needs 3 values (PNet, RNet, ONet), got {thresholds}")
        self.output_size = int(output_size)
        self.min_face_size = None if min_face_size is None else int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = int(max_side)
        self.framing = framing
        self._template = template(self.output_size, framing)

    # -- detection ---------------------------------------------------------------------

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
            _check_rgb(image)
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

    # -- alignment ---------------------------------------------------------------------

    def align(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Warp ``rgb`` so that ``landmarks`` land on the template.

        Args:
          rgb: uint8 [H, W, 3] RGB.
          landmarks: float [5, 2] (x, y) in ``rgb``'s pixels, in the order of
            :class:`Detection`.
        Returns:
          uint8 [S, S, 3] RGB, S = output_size; outside the photo is filled as the
          framing's border says.
        """
        _check_rgb(rgb)
        matrix = self._matrix(landmarks)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if scale < 0.5:
            # Shrinking a lot with bilinear sampling aliases; pre-shrink with area averaging.
            shrink = 2.0 * scale
            rgb = cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            matrix = matrix @ np.diag([1.0 / shrink, 1.0 / shrink, 1.0])
        return cv2.warpAffine(rgb, matrix, (self.output_size, self.output_size),
                              flags=cv2.INTER_LINEAR,
                              borderMode=BORDER_MODES[self.framing.border],
                              borderValue=(0, 0, 0))

    def coverage(self, image_shape: Sequence[int], landmarks: np.ndarray) -> float:
        """Share of the aligned crop's area that lies inside the source image, 0..1.

        Args:
          image_shape: (H, W, ...) of the source image.
          landmarks: float [5, 2] (x, y) landmarks in that image, pixels.
        Returns:
          The area of (source rectangle mapped into the crop) ∩ (crop square), divided by
          the crop's area; 1.0 when no crop pixel comes from the border fill.
        """
        matrix = self._matrix(landmarks)
        height, width = float(image_shape[0]), float(image_shape[1])
        corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]])
        mapped = (corners @ matrix.T).astype(np.float32)
        side = float(self.output_size)
        crop = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float32)
        area, _ = cv2.intersectConvexConvex(mapped, crop)
        return float(np.clip(area / (side * side), 0.0, 1.0))

    def _matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """The similarity transform [2, 3] from image pixels onto the template."""
        points = np.asarray(landmarks, np.float64).reshape(5, 2)
        return similarity_transform(points, self._template)

    def detect_and_align(self, rgb: np.ndarray, max_faces: int | None = None) -> list[AlignedFace]:
        """Detect faces in ``rgb`` and align each (best first); [] when there is none."""
        return self.detect_and_align_batch([rgb], max_faces)[0]

    def detect_and_align_batch(self, images: Sequence[np.ndarray],
                               max_faces: int | None = None) -> list[list[AlignedFace]]:
        """:meth:`detect_and_align` for many images, detecting same-shaped ones together."""
        aligned = []
        for image, faces in zip(images, self.detect_batch(images)):
            aligned.append([
                AlignedFace(self.align(image, face.landmarks), face.box, face.confidence,
                            face.landmarks, self.coverage(image.shape, face.landmarks))
                for face in faces[:max_faces]
            ])
        return aligned

    def center_crop(self, rgb: np.ndarray) -> np.ndarray:
        """The largest central square of ``rgb`` resized to output_size: uint8 [S, S, 3].

        The fallback for pre-cropped datasets when no face is detected; its framing
        differs from :meth:`align`'s, so callers flag such images.
        """
        _check_rgb(rgb)
        height, width = rgb.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = rgb[top:top + side, left:left + side]
        interpolation = cv2.INTER_AREA if side > self.output_size else cv2.INTER_LINEAR
        return cv2.resize(square, (self.output_size, self.output_size),
                          interpolation=interpolation)


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


def _check_rgb(rgb: np.ndarray) -> None:
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
